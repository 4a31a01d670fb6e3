// Per-credential limits: the token bucket (JOTA_RATE_LIMIT per minute,
// JOTA_RATE_BURST at once) answers 429 rate_limited with Retry-After once
// empty and refills with time; the cap on concurrent streams
// (JOTA_MAX_STREAMS) answers 429 too_many_streams while a turn streams. Both
// count per credential, refuse before anything is stored, and are counted in
// the metrics.
import assert from "node:assert/strict";
import { startTestGateway, api, type TestGateway } from "./helpers/gateway";
import { assertError, credentialState } from "./helpers/auth";
import { Limits } from "../src/auth/limits";
import { ApiError } from "../src/http/errors";

const PER_MIN = 30; // one request back every 2 s
const BURST = 4;

async function rateLimitedCount(t: TestGateway): Promise<number> {
  const m = await t.gw.ctx.metrics.rateLimited.get();
  return m.values.find((v) => v.labels.interface === "rest")?.value ?? 0;
}

async function until(what: string, probe: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("limits per credential", function () {
  this.timeout(120_000);
  let t: TestGateway;

  before(async () => {
    t = await startTestGateway({ env: { JOTA_RATE_LIMIT: String(PER_MIN), JOTA_RATE_BURST: String(BURST), JOTA_MAX_STREAMS: "1" } });
  });
  after(() => t?.close());

  it("answers 429 with Retry-After past the burst, refuses before storing, and refills with time", async () => {
    const u = await t.user("ana");
    const second = await t.stack.db.repos.apiKeys.create(u.userId, { name: "second", scopes: ["chat"] });
    const counted = await rateLimitedCount(t);
    for (let i = 0; i < BURST; i++) assert.equal((await api(t, u.key, "GET", "/api/v1/keys")).status, 200, `request ${i + 1}`);

    const before = await credentialState(t.stack);
    const r = await api(t, u.key, "POST", "/api/v1/keys", { name: "one too many" });
    assertError(r, 429, "rate_limited");
    const wait = Number(r.headers.get("retry-after"));
    assert.ok(wait >= 1 && wait <= 60 / PER_MIN, `Retry-After ${wait}`);
    assert.equal(r.json.error.details.retry_after_s, wait);
    assert.equal(r.json.error.details.limit_per_min, PER_MIN);
    assert.deepEqual(await credentialState(t.stack), before, "a refused request created a key");
    assert.equal(await rateLimitedCount(t), counted + 1);

    // Another credential of the same user has its own bucket.
    assert.equal((await api(t, second.secret, "GET", "/api/v1/keys")).status, 200);

    await new Promise((res) => setTimeout(res, wait * 1000 + 100));
    assert.equal((await api(t, u.key, "GET", "/api/v1/keys")).status, 200, "the bucket did not refill");
    assertError(await api(t, u.key, "GET", "/api/v1/keys"), 429, "rate_limited");
  });

  it("answers 429 too_many_streams while the credential's turn streams, storing nothing, and serves once it ends", async () => {
    const u = await t.user("bea");
    const long = api(t, u.key, "POST", "/api/v1/chat", { content: "Tell me a very long story", options: { max_tokens: 6000 } });
    let requestId = "";
    await until("the first turn to stream", async () => {
      const r = await t.stack.db.prisma.request.findFirst({ where: { userId: u.userId } });
      requestId = r?.id ?? "";
      return r?.status === "STREAMING";
    });
    const stored = { requests: await t.stack.db.prisma.request.count(), conversations: await t.stack.db.prisma.conversation.count() };

    const refused = await api(t, u.key, "POST", "/api/v1/chat", { content: "and another one" });
    assertError(refused, 429, "too_many_streams");
    assert.equal(refused.json.error.details.limit, 1);
    assert.equal(await t.stack.db.prisma.request.count(), stored.requests);
    assert.equal(await t.stack.db.prisma.conversation.count(), stored.conversations);

    // Another user is not held back by this user's stream.
    const other = await t.user("carl");
    const short = await api(t, other.key, "POST", "/api/v1/chat", { content: "hola", options: { max_tokens: 4 } });
    assert.equal(short.status, 200, short.text);

    assert.equal((await api(t, u.key, "POST", `/api/v1/requests/${requestId}/abort`)).status, 202);
    const first = await long;
    assert.equal(first.json.status, "ABORTED");
    const again = await api(t, u.key, "POST", "/api/v1/chat", { content: "hola", options: { max_tokens: 4 } });
    assert.equal(again.status, 200, again.text);
  });
});

describe("limits per credential: memory", () => {
  it("forgets a credential's bucket once it has refilled, without giving anyone a fresh burst early", () => {
    let now = 1_000_000;
    const limits = new Limits({ rateLimitPerMin: 60, rateBurst: 2, maxStreamsPerKey: 1 }, () => now); // one back per second: full after 2 s
    const who = (id: string) => ({ userId: "u", username: "u", role: "USER" as const, via: "api_key" as const, credentialId: id, scopes: [] });

    // 10,000 one-off keys (a user minting keys, or keys that come and go) ...
    for (let i = 0; i < 10_000; i++) limits.take(who(`k${i}`));
    // ... and one busy key that has emptied its bucket.
    limits.take(who("busy"));
    limits.take(who("busy"));
    assert.equal(limits.tracked, 10_001);

    now += 500; // not refilled yet: nothing may be dropped, and "busy" is still limited
    assert.throws(() => limits.take(who("busy")), (e: ApiError) => e.status === 429);
    assert.equal(limits.tracked, 10_001);

    now += 3_000; // every bucket has refilled: the map empties on the next take
    limits.take(who("busy"));
    assert.equal(limits.tracked, 1, "only the credential just seen is kept");
    limits.take(who("busy"));
    assert.throws(() => limits.take(who("busy")), (e: ApiError) => e.status === 429, "a dropped bucket comes back full, never fuller");
  });
});
