// GET /metrics (http/metrics.ts, metrics.ts, http/observe.ts): Prometheus
// text for an admin credential only; HTTP requests counted by route pattern
// (mount prefix included, never a raw id) and status, refused ones too; each
// chat turn counted by interface and final status with its time to first
// token and decode rate; streams in progress; the engines' state read at
// scrape time; requests refused by the rate limit, per interface.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { ALL_SCOPES } from "../src/auth/principal";
import { ErrorBody } from "../src/api/schemas";
import { api, startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";

// A burst small enough to empty in a few requests, refilled too slowly
// (1 a minute) to matter while the test runs. /metrics itself takes nothing
// from the bucket, so scraping never counts against it.
const BURST = 8;
const SLOTS = 2;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Parses the Prometheus text exposition format strictly: every line is a
 * HELP or TYPE comment or a sample of a family whose TYPE came before it
 * (histogram samples as <family>_bucket / _sum / _count). Anything else fails.
 */
function parsePrometheus(text: string): { samples: Sample[]; types: Map<string, string> } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  const sampleRe = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: -?\\d+)?$`);
  const labelRe = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)/y;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("# HELP ")) continue;
    const type = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line);
    if (type) {
      assert.ok(!types.has(type[1]!), `family ${type[1]} declared twice`);
      types.set(type[1]!, type[2]!);
      continue;
    }
    const m = sampleRe.exec(line);
    assert.ok(m, `not a Prometheus line: ${JSON.stringify(line)}`);
    const [, name, rawLabels = "", rawValue] = m;
    const family = types.has(name!) ? name! : name!.replace(/_(bucket|sum|count)$/, "");
    assert.ok(types.has(family), `sample ${name} before (or without) its # TYPE`);
    const labels: Record<string, string> = {};
    labelRe.lastIndex = 0;
    while (labelRe.lastIndex < rawLabels.length) {
      const l = labelRe.exec(rawLabels);
      assert.ok(l, `bad labels in ${JSON.stringify(line)}`);
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    const value = rawValue === "+Inf" ? Infinity : rawValue === "-Inf" ? -Infinity : Number(rawValue);
    // Prometheus parses NaN in any case (Go's ParseFloat); prom-client writes a lag sampled before any loop turn as "Nan".
    assert.ok(/^nan$/i.test(rawValue) || !Number.isNaN(value), `bad value in ${JSON.stringify(line)}`);
    samples.push({ name: name!, labels, value });
  }
  return { samples, types };
}

class Scrape {
  constructor(
    readonly samples: Sample[],
    readonly types: Map<string, string>,
  ) {}

  /** The samples of `name` whose labels include `labels`. */
  find(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** Their sum (0 when there is none: a counter not yet incremented has no series). */
  sum(name: string, labels: Record<string, string> = {}): number {
    return this.find(name, labels).reduce((a, s) => a + s.value, 0);
  }
}

describe("GET /metrics", function () {
  this.timeout(180_000);
  let t: TestGateway;
  let alice: TestUser;

  before(async () => {
    t = await startTestGateway({ slots: SLOTS, ctxSize: 1024, embeddings: false, env: { JOTA_RATE_LIMIT: "1", JOTA_RATE_BURST: String(BURST) } });
    alice = await t.user("alice");
  });
  after(async () => {
    await t?.close();
  });

  async function scrape(): Promise<Scrape> {
    const res = await api(t, t.admin.key, "GET", "/metrics");
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const { samples, types } = parsePrometheus(res.text);
    return new Scrape(samples, types);
  }

  /** Scrapes until `ok` holds (turn metrics are recorded when the turn's result settles, just after its response). */
  async function scrapeUntil(ok: (s: Scrape) => boolean, ms = 10_000): Promise<Scrape> {
    const end = Date.now() + ms;
    for (;;) {
      const s = await scrape();
      if (ok(s) || Date.now() > end) return s;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it("is served to an admin key only: 401 without a credential, 403 for a USER's key whatever its scopes", async () => {
    const anon = await api(t, undefined, "GET", "/metrics");
    assert.equal(anon.status, 401);
    assert.equal(ErrorBody.parse(anon.json).error.code, "unauthorized");
    assert.ok(!anon.text.includes("jota_"), "nothing of the metrics leaks");
    const user = await api(t, alice.key, "GET", "/metrics");
    assert.equal(user.status, 403);
    assert.equal(ErrorBody.parse(user.json).error.code, "forbidden");
    const allScopes = await t.user("not-admin", [...ALL_SCOPES]);
    assert.equal((await api(t, allScopes.key, "GET", "/metrics")).status, 403, "the admin scope without the ADMIN role");
    const s = await scrape();
    for (const family of ["jota_http_requests_total", "jota_turns_total", "jota_engine_up", "jota_engine_free_slots", "jota_time_to_first_token_seconds", "jota_tokens_per_second", "jota_active_streams", "jota_rate_limited_total"])
      assert.ok(s.types.has(family), `family ${family} is exposed`);
    assert.equal(s.types.get("jota_time_to_first_token_seconds"), "histogram");
    assert.equal(s.types.get("jota_turns_total"), "counter");
  });

  it("counts HTTP requests by route pattern with the mount prefix and by status, never by raw path", async () => {
    const conv = await t.stack.db.repos.conversations.create(alice.userId, { title: "metrics" });
    const missing = randomUUID();
    const noChat = await t.user("no-chat", ["audio"]);
    const models = await api(t, alice.key, "GET", "/v1/models");
    assert.equal(models.status, 200);
    const modelId: string = models.json.data[1].id;
    const calls: [string | undefined, string, string, number][] = [
      [alice.key, "GET", `/api/v1/conversations/${conv.id}`, 200],
      [alice.key, "GET", `/api/v1/conversations/${missing}`, 404],
      [alice.key, "GET", `/v1/models/${modelId}`, 200],
      // Refused by the route's own scope check: the error leaves the nested routers before the response ends.
      [noChat.key, "POST", "/api/v1/chat", 403],
      [noChat.key, "POST", "/v1/chat/completions", 403],
      [undefined, "GET", `/nowhere/${missing}`, 404],
    ];
    const before = await scrape();
    for (const [key, method, path, status] of calls) assert.equal((await api(t, key, method, path)).status, status, `${method} ${path}`);
    const after = await scrapeUntil((s) => s.sum("jota_http_requests_total", { route: "unmatched", status: "404" }) > before.sum("jota_http_requests_total", { route: "unmatched", status: "404" }));

    const delta = (method: string, route: string, status: string) =>
      after.sum("jota_http_requests_total", { method, route, status }) - before.sum("jota_http_requests_total", { method, route, status });
    assert.equal(delta("GET", "/api/v1/conversations/:id", "200"), 1);
    assert.equal(delta("GET", "/api/v1/conversations/:id", "404"), 1, "a 404 from a matched route keeps its pattern");
    assert.equal(delta("GET", "/v1/models", "200"), 0, "counted before the first scrape");
    assert.equal(delta("GET", "/v1/models/*id", "200"), 1);
    assert.equal(delta("POST", "/api/v1/chat", "403"), 1);
    assert.equal(delta("POST", "/v1/chat/completions", "403"), 1);
    assert.equal(delta("GET", "unmatched", "404"), 1);

    const routes = new Set(after.find("jota_http_requests_total").map((s) => s.labels.route!));
    for (const r of routes) {
      assert.ok(r === "unmatched" || r.startsWith("/"), r);
      assert.doesNotMatch(r, /[0-9a-f]{8}-[0-9a-f]{4}-/i, `a raw id in route label ${r}`);
      assert.ok(!r.includes(modelId), `a raw model id in route label ${r}`);
    }
    assert.ok(!routes.has("/chat") && !routes.has("/conversations/:id"), "no route label lost its mount prefix");
    // The duration histogram is labelled the same way.
    assert.ok(after.sum("jota_http_request_duration_seconds_count", { method: "GET", route: "/api/v1/conversations/:id" }) >= 2);
  });

  it("records each turn by interface and status, its time to first token and decode rate; streams return to 0", async () => {
    const before = await scrape();
    const rest = await api(t, alice.key, "POST", "/api/v1/chat", { content: "Count to ten.", options: { max_tokens: 12 } });
    assert.equal(rest.status, 200, rest.text);
    assert.equal(rest.json.status, "COMPLETED");
    assert.ok(rest.json.usage.completion_tokens > 1, "the turn decoded more than one token (a rate needs two)");

    // A streamed /v1 completion, scraped while it streams.
    const res = await fetch(`${t.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${alice.key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "jota", messages: [{ role: "user", content: "Count to ten." }], max_tokens: 12, stream: true, stream_options: { include_usage: true } }),
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    let text = "";
    const read = async () => {
      const { value, done } = await reader.read();
      if (!done) text += Buffer.from(value).toString();
      return done;
    };
    await read(); // the first chunk: the turn is running
    const during = await scrape();
    assert.equal(during.sum("jota_active_streams", { interface: "openai" }), 1, "one /v1 stream in progress");
    while (!(await read()));
    assert.ok(text.trimEnd().endsWith("data: [DONE]"), text);
    const usage = JSON.parse(text.split("\n\n").filter(Boolean).at(-2)!.slice(6)).usage;
    assert.ok(usage.completion_tokens > 1, "the streamed turn decoded more than one token");

    const grew = (s: Scrape, iface: string) =>
      s.sum("jota_turns_total", { interface: iface, status: "COMPLETED" }) - before.sum("jota_turns_total", { interface: iface, status: "COMPLETED" });
    const after = await scrapeUntil((s) => grew(s, "rest") === 1 && grew(s, "openai") === 1);
    for (const iface of ["rest", "openai"]) {
      assert.equal(grew(after, iface), 1, `one COMPLETED ${iface} turn`);
      const d = (name: string) => after.sum(name, { interface: iface }) - before.sum(name, { interface: iface });
      assert.equal(d("jota_time_to_first_token_seconds_count"), 1, `${iface}: one time to first token`);
      assert.ok(d("jota_time_to_first_token_seconds_sum") > 0, `${iface}: a positive time to first token`);
      const inf = after.find("jota_time_to_first_token_seconds_bucket", { interface: iface, le: "+Inf" });
      assert.equal(inf.length, 1);
      assert.equal(inf[0]!.value, after.sum("jota_time_to_first_token_seconds_count", { interface: iface }), "the +Inf bucket is the count");
      assert.equal(d("jota_tokens_per_second_count"), 1, `${iface}: one decode rate`);
      assert.ok(d("jota_tokens_per_second_sum") > 0, `${iface}: a positive decode rate`);
      assert.equal(after.sum("jota_active_streams", { interface: iface }), 0, `${iface}: no stream left open`);
      assert.equal(after.find("jota_turns_total", { interface: iface }).filter((s) => s.labels.status !== "COMPLETED").length, 0, `${iface}: no turn ended otherwise`);
    }
    assert.equal(after.sum("jota_turns_running"), 0);
  });

  it("reads the engine's state at scrape time: up, and its free slots once idle", async () => {
    const address = t.inference.address!;
    const s = await scrapeUntil((x) => x.sum("jota_engine_free_slots", { engine: address }) === SLOTS);
    assert.deepEqual(
      s.find("jota_engine_up").map((x) => [x.labels.kind, x.labels.engine, x.value]),
      [["inference", address, 1]],
    );
    assert.equal(s.sum("jota_engine_free_slots", { engine: address }), SLOTS, "every slot free when no turn runs");
    assert.equal(s.find("jota_engine_queue_length", { engine: address })[0]?.value, 0);
  });

  it("counts requests refused by the rate limit, per interface", async () => {
    const before = await scrape();
    const refused = { rest: 0, openai: 0 };
    for (const [iface, path] of [["rest", "/api/v1/conversations"], ["openai", "/v1/models"]] as const) {
      const u = await t.user(`flood-${iface}`);
      for (let i = 0; i <= BURST; i++) {
        const r = await api(t, u.key, "GET", path);
        assert.equal(r.status, i < BURST ? 200 : 429, `${path} request ${i + 1} of a burst of ${BURST}`);
        if (r.status === 429) {
          assert.ok(Number(r.headers.get("retry-after")) >= 1);
          refused[iface]++;
        }
      }
    }
    const after = await scrape();
    for (const iface of ["rest", "openai"] as const)
      assert.equal(
        after.sum("jota_rate_limited_total", { interface: iface }) - before.sum("jota_rate_limited_total", { interface: iface }),
        refused[iface],
        `${iface}: every 429 is counted once`,
      );
    assert.equal(
      after.sum("jota_http_requests_total", { status: "429" }) - before.sum("jota_http_requests_total", { status: "429" }),
      refused.rest + refused.openai,
      "and as HTTP 429s",
    );
  });
});
