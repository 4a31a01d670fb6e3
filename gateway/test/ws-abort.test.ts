// Aborting turns over the socket: by request id mid-stream (the engine stops:
// its cancellation counter rises and its slot frees; the turn is stored
// ABORTED with the partial reply the client saw), by the message frame's id
// before `start` has arrived, from another socket of the same user; and an
// abort of nothing is not_found without harm.
import assert from "node:assert/strict";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { connect, tokenText } from "./helpers/ws-client";

async function waitUntil(cond: () => Promise<boolean>, what: string, ms = 5000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("ws: abort", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let u: TestUser;
  // Uncancelled, a reply this long runs for many seconds on the tiny model.
  const LONG = { max_tokens: 6000 };
  before(async () => {
    t = await startTestGateway({ embeddings: false, ctxSize: 8192 });
    u = await t.user("ws-abort");
  });
  after(() => t?.close());

  const info = () => t.stack.pool.inference[0]!.client.info();

  it("abort by request id mid-stream: end ABORTED, the engine stops, the partial reply is stored", async () => {
    const c = await connect(t, u.userId, u.key);
    const before = (await info()).counters!;
    c.send({ type: "message", id: "m", content: "Cuéntame una historia muy larga", options: LONG });
    const start = await c.waitFor((f) => f.type === "start", "start");
    await c.waitFor((f) => f.type === "token" && c.turnFrames(start.request_id).filter((x) => x.type === "token").length >= 3, "three tokens");
    assert.equal((await info()).slotsBusy, 1, "the engine is generating");
    c.send({ type: "abort", id: "stop-it", request_id: start.request_id });
    const end = await c.waitFor((f) => f.type === "end", "end");
    assert.deepEqual([end.id, end.request_id, end.status, end.finish_reason], ["m", start.request_id, "ABORTED", "cancelled"]);
    assert.ok(end.usage.completion_tokens >= 3 && end.usage.completion_tokens < LONG.max_tokens);
    assert.ok(!c.frames.some((f) => f.id === "stop-it"), "a successful abort is answered by the turn's end, nothing else");

    const req = await t.stack.db.repos.requests.get(u.userId, start.request_id);
    assert.deepEqual([req.status, req.finishReason], ["ABORTED", "cancelled"]);
    const reply = await t.stack.db.repos.messages.get(u.userId, end.message_id);
    assert.equal(reply.content, tokenText(c.turnFrames(start.request_id)), "the stored partial reply is what the client got");

    await waitUntil(async () => (await info()).slotsBusy === 0, "the slot freed");
    const after = (await info()).counters!;
    assert.equal(Number(after.cancellations) - Number(before.cancellations), 1);
    c.close();
  });

  it("abort by ref right after the message: the turn ends ABORTED before it streams; the user's message is kept", async () => {
    const c = await connect(t, u.userId, u.key);
    c.send({ type: "message", id: 41, content: "Habla sin parar", options: LONG });
    c.send({ type: "abort", ref: 41 });
    const end = await c.waitFor((f) => f.type === "end" || f.type === "error", "the end");
    assert.deepEqual([end.type, end.id, end.status], ["end", 41, "ABORTED"]);
    const frames = c.turnFrames(end.request_id);
    assert.ok(!frames.some((f) => f.type === "token"), "no token was sent");
    assert.equal(end.message_id, null);
    const req = await t.stack.db.repos.requests.get(u.userId, end.request_id);
    assert.equal(req.status, "ABORTED");
    const msgs = await t.stack.db.repos.messages.ofRequest(u.userId, end.request_id);
    assert.deepEqual(
      msgs.map((m) => [m.role, m.content]),
      [["USER", "Habla sin parar"]],
    );
    c.close();
  });

  it("another socket of the same user can abort the turn; the first socket gets its end", async () => {
    const a = await connect(t, u.userId, u.key);
    const b = await connect(t, u.userId, u.key);
    a.send({ type: "message", id: "on-a", content: "Una historia larga", options: LONG });
    const start = await a.waitFor((f) => f.type === "start", "start on a");
    b.send({ type: "abort", request_id: start.request_id });
    const end = await a.waitFor((f) => f.type === "end", "end on a");
    assert.deepEqual([end.request_id, end.status], [start.request_id, "ABORTED"]);
    assert.deepEqual(b.frames, []);
    a.close();
    b.close();
  });

  it("aborting nothing is not_found: an unknown request, a finished one, another user's, an unknown ref", async () => {
    const c = await connect(t, u.userId, u.key);
    c.send({ type: "message", id: "short", content: "hola", options: { max_tokens: 4 } });
    const finished = await c.waitFor((f) => f.type === "end" && f.id === "short", "a finished turn");

    const other = await t.user("ws-abort-other");
    const o = await connect(t, other.userId, other.key);
    o.send({ type: "message", id: "theirs", content: "Una historia larga", options: LONG });
    const theirs = await o.waitFor((f) => f.type === "start", "the other user's start");

    const cases: [string, Record<string, unknown>][] = [
      ["unknown", { request_id: "0b7c6f1e-3c1a-4b8e-9f7d-1a2b3c4d5e6f" }],
      ["malformed", { request_id: "nope" }],
      ["finished", { request_id: finished.request_id }],
      ["theirs", { request_id: theirs.request_id }],
      ["ref", { ref: "never-sent" }],
    ];
    for (const [id, target] of cases) c.send({ type: "abort", id, ...target });
    for (const [id] of cases) {
      const e = await c.waitFor((f) => f.id === id, `the answer to abort ${id}`);
      assert.deepEqual([e.type, e.code], ["error", "not_found"], id);
    }
    // The other user's turn runs on.
    assert.equal((await t.stack.db.repos.requests.get(other.userId, theirs.request_id)).status, "STREAMING");
    o.send({ type: "abort", request_id: theirs.request_id });
    assert.equal((await o.waitFor((f) => f.type === "end", "their end")).status, "ABORTED");
    c.close();
    o.close();
  });
});
