// /health/live, /health/ready and /health (http/health.ts): liveness and
// readiness answer without a credential and say nothing but ok /
// unavailable; /health, for an admin key, lists the database and every
// engine with its status and latency. An engine that stops makes the
// gateway unready (503, the engine "down") while it stays live.
import assert from "node:assert/strict";
import { ErrorBody } from "../src/api/schemas";
import { api, startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";

interface Component {
  name: string;
  kind: string;
  status: string;
  detail: string;
  latencyMs: number;
}

async function waitFor<T>(what: string, ms: number, probe: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("health endpoints", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let alice: TestUser;
  let inference: string;
  let transcription: string;

  before(async () => {
    t = await startTestGateway({ transcription: true, slots: 1, ctxSize: 512, embeddings: false });
    alice = await t.user("alice");
    inference = t.inference.address!;
    transcription = t.transcription!.address!;
  });
  after(async () => {
    await t?.close();
  });

  function checkComponents(list: Component[], expect: Record<string, "ok" | "down">) {
    assert.deepEqual(list.map((c) => c.kind).sort(), ["database", "inference", "redis", "transcription"]);
    for (const c of list) {
      assert.equal(typeof c.name, "string");
      assert.equal(typeof c.detail, "string");
      assert.ok(typeof c.latencyMs === "number" && Number.isFinite(c.latencyMs) && c.latencyMs >= 0, `${c.name}: latencyMs ${c.latencyMs}`);
      assert.equal(c.status, expect[c.kind], `${c.name} is ${c.status}: ${c.detail}`);
    }
    assert.equal(list.find((c) => c.kind === "inference")!.name, `inference@${inference}`);
    assert.equal(list.find((c) => c.kind === "transcription")!.name, `transcription@${transcription}`);
    assert.match(list.find((c) => c.kind === "database")!.name, /^database \(pglite\)$/);
    assert.match(list.find((c) => c.kind === "redis")!.name, /^redis \(.+\)$/);
  }

  it("/health/live and /health/ready answer 200 {status: ok} without a credential", async () => {
    for (const path of ["/health/live", "/health/ready"]) {
      const r = await api(t, undefined, "GET", path);
      assert.equal(r.status, 200, `${path}: ${r.text}`);
      assert.deepEqual(r.json, { status: "ok" }, `${path} tells nothing more to an anonymous caller`);
    }
  });

  it("/health needs an admin key: 401 without one, 403 for a USER's key", async () => {
    const anon = await api(t, undefined, "GET", "/health");
    assert.equal(anon.status, 401);
    assert.equal(ErrorBody.parse(anon.json).error.code, "unauthorized");
    const user = await api(t, alice.key, "GET", "/health");
    assert.equal(user.status, 403);
    assert.equal(ErrorBody.parse(user.json).error.code, "forbidden");
    assert.ok(!user.text.includes(inference), "no component detail for a non-admin");
  });

  it("/health lists the database, every engine and Redis, each ok with its latency", async () => {
    const r = await api(t, t.admin.key, "GET", "/health");
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, "ok");
    checkComponents(r.json.components, { database: "ok", inference: "ok", transcription: "ok", redis: "ok" });
    assert.match(r.json.components.find((c: Component) => c.kind === "inference").detail, /^SERVING; slots \d+\/1 busy, queue \d+$/);
  });

  it("with the inference engine stopped: ready and /health answer 503 with the engine down, live still 200", async () => {
    await t.inference.stop();
    // The pool notices within its reconnect backoff (100 ms .. 1 s in tests).
    await waitFor("the pool to see the engine down", 10_000, async () => t.stack.pool.status().find((s) => s.kind === "inference")!.health, (h) => h !== "serving");

    const ready = await waitFor("/health/ready to answer 503", 10_000, () => api(t, undefined, "GET", "/health/ready"), (r) => r.status !== 200);
    assert.equal(ready.status, 503, ready.text);
    assert.deepEqual(ready.json, { status: "unavailable" });

    const full = await api(t, t.admin.key, "GET", "/health");
    assert.equal(full.status, 503, full.text);
    assert.equal(full.json.status, "unavailable");
    checkComponents(full.json.components, { database: "ok", inference: "down", transcription: "ok", redis: "ok" });

    const live = await api(t, undefined, "GET", "/health/live");
    assert.equal(live.status, 200);
    assert.deepEqual(live.json, { status: "ok" });
  });
});
