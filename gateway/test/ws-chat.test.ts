// The WebSocket chat protocol's happy path, against a real gateway and engine:
// a message gets start, tokens and end, in that order, keyed by request id;
// the tokens are exactly the stored reply; a conversation continues; several
// turns share one socket; ping gets pong; frames and connections are counted.
import assert from "node:assert/strict";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { connect, tokenText, type Frame } from "./helpers/ws-client";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe("ws: chat turns", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let u: TestUser;
  before(async () => {
    t = await startTestGateway();
    u = await t.user("ws-chat");
  });
  after(() => t?.close());

  const endOf = (c: Awaited<ReturnType<typeof connect>>, id: unknown) =>
    c.waitFor((f) => f.id === id && (f.type === "end" || f.type === "error"), `the end of message ${String(id)}`);

  /** The frame types of one turn, tokens collapsed: ["start", "token…", "end"]. */
  const shape = (frames: Frame[]) => frames.map((f) => f.type).filter((ty, i, all) => ty !== "token" || all[i - 1] !== "token").map((ty) => (ty === "token" ? "token…" : ty));

  it("a message in a new conversation streams start, tokens and end; the tokens are the stored reply", async () => {
    const c = await connect(t, u.userId, u.key);
    c.send({ type: "message", id: "m1", content: "Hola, ¿qué tal?", options: { max_tokens: 24 } });
    const end = await endOf(c, "m1");
    assert.equal(end.type, "end", JSON.stringify(end));
    const frames = c.turnFrames(end.request_id);
    assert.deepEqual(shape(frames), ["start", "token…", "end"]);

    const start = frames[0]!;
    assert.equal(start.id, "m1");
    assert.match(start.conversation_id, UUID);
    assert.equal(start.conversation_created, true);
    assert.deepEqual(Object.keys(start.route).sort(), ["route", "source"]);
    assert.equal(start.route.route, "chat");

    const tokens = frames.filter((f) => f.type === "token");
    assert.ok(tokens.every((f) => f.count === 1 && !("id" in f)), "an unhurried reader gets one frame per delta, without the id");
    for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]!.index > tokens[i - 1]!.index, "indexes increase");
    assert.equal(tokens[0]!.index, 0);

    assert.equal(end.status, "COMPLETED");
    assert.ok(["stop", "length"].includes(end.finish_reason));
    assert.ok(end.usage.completion_tokens > 0 && end.usage.completion_tokens <= 24);
    assert.ok(end.usage.prompt_tokens > 0);
    assert.ok(end.timings.total_ms > 0 && end.timings.ttft_ms > 0 && end.timings.ttft_ms <= end.timings.total_ms);

    const { repos } = t.stack.db;
    const req = await repos.requests.get(u.userId, end.request_id);
    assert.equal(req.status, "COMPLETED");
    const reply = await repos.messages.get(u.userId, end.message_id);
    assert.equal(reply.content, tokenText(tokens));
    assert.equal(reply.conversationId, start.conversation_id);
    c.close();
  });

  it("a message naming its conversation continues it (the reply sees the history)", async () => {
    const c = await connect(t, u.userId, u.key);
    c.send({ type: "message", id: 1, content: "Me llamo Ana.", options: { max_tokens: 8 } });
    const first = await endOf(c, 1);
    const conversationId = c.turnFrames(first.request_id)[0]!.conversation_id;
    c.send({ type: "message", id: 2, conversation_id: conversationId, content: "¿Cómo me llamo?", options: { max_tokens: 8 } });
    const second = await endOf(c, 2);
    assert.equal(second.type, "end");
    const start = c.turnFrames(second.request_id)[0]!;
    assert.deepEqual([start.type, start.id, start.conversation_id, start.conversation_created], ["start", 2, conversationId, false]);
    // The second prompt carried the first turn: it is longer than the first one.
    assert.ok(second.usage.prompt_tokens > first.usage.prompt_tokens);
    const history = await t.stack.db.repos.messages.list(u.userId, conversationId);
    assert.deepEqual(
      history.items.map((m) => m.role),
      ["USER", "ASSISTANT", "USER", "ASSISTANT"],
    );
    c.close();
  });

  it("several turns run on one socket at once, each keyed by its request id", async () => {
    const c = await connect(t, u.userId, u.key);
    const ids = ["a", "b", "c"];
    for (const id of ids) c.send({ type: "message", id, content: `Cuenta hasta diez (${id})`, options: { max_tokens: 32 } });
    const ends = await Promise.all(ids.map((id) => endOf(c, id)));
    assert.equal(new Set(ends.map((e) => e.request_id)).size, 3);
    for (const end of ends) {
      assert.equal(end.type, "end");
      const frames = c.turnFrames(end.request_id);
      assert.deepEqual(shape(frames), ["start", "token…", "end"]);
      const reply = await t.stack.db.repos.messages.get(u.userId, end.message_id);
      assert.equal(reply.content, tokenText(frames));
    }
    c.close();
  });

  it("ping gets pong with the client's id; frames and connections are counted", async () => {
    const metric = async (name: string, labels: Record<string, string> = {}) => {
      const m = await t.gw.ctx.metrics.registry.getSingleMetric(name)!.get();
      return m.values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((s, v) => s + v.value, 0);
    };
    const settle = async (value: number) => {
      const end = Date.now() + 2000;
      while ((await metric("jota_ws_connections")) !== value && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    };
    await settle(0); // the sockets of the tests before have closed
    const before = {
      conns: 0,
      pingsIn: await metric("jota_ws_frames_total", { direction: "in", type: "ping" }),
      pongsOut: await metric("jota_ws_frames_total", { direction: "out", type: "pong" }),
    };
    const c = await connect(t, u.userId, u.key);
    assert.equal(await metric("jota_ws_connections"), before.conns + 1);
    c.send({ type: "ping", id: "p-1" });
    c.send({ type: "ping" });
    c.send({ type: "ping", id: 7 });
    await c.waitFor((f) => f.id === 7, "the third pong");
    assert.deepEqual(c.frames, [{ type: "pong", id: "p-1" }, { type: "pong" }, { type: "pong", id: 7 }]);
    assert.equal(await metric("jota_ws_frames_total", { direction: "in", type: "ping" }), before.pingsIn + 3);
    assert.equal(await metric("jota_ws_frames_total", { direction: "out", type: "pong" }), before.pongsOut + 3);
    c.close();
    await c.closed;
    await settle(before.conns);
    assert.equal(await metric("jota_ws_connections"), before.conns);
  });
});
