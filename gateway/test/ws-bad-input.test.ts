// Bad client frames on the chat socket. Each gets the error frame or close
// code docs/ws-protocol.md gives it; an error frame leaves the socket open
// (the next ping is answered); nothing a user has stored changes; the
// gateway keeps serving.
import assert from "node:assert/strict";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { connect, stored, type WsClient } from "./helpers/ws-client";

describe("ws: bad input", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let u: TestUser;
  let c: WsClient;
  before(async () => {
    t = await startTestGateway({ embeddings: false, ctxSize: 4096 });
    u = await t.user("ws-bad");
    c = await connect(t, u.userId, u.key);
  });
  after(async () => {
    c?.close();
    await t?.close();
  });

  let pings = 0;
  /** The error frame the last frame got, after which the socket still answers a ping. */
  async function errorFor(frame: unknown): Promise<Record<string, any>> {
    const seen = c.frames.length;
    c.send(frame);
    const err = await c.waitFor((f) => c.frames.indexOf(f) >= seen && f.type === "error", `the error for ${String(frame).slice(0, 80)}`);
    const id = `alive-${++pings}`;
    c.send({ type: "ping", id });
    await c.waitFor((f) => f.type === "pong" && f.id === id, "pong after the error");
    assert.equal(c.ws.readyState, c.ws.OPEN);
    return err;
  }

  it("malformed JSON, non-objects and unknown types are refused, naming what is wrong", async () => {
    const before = await stored(t.stack, u.userId);
    const bad = await errorFor('{"type":"message", "content": "hola"');
    assert.deepEqual([bad.code, bad.details], ["invalid_json", {}]);

    for (const frame of ["[]", "42", "null", '"message"']) {
      const e = await errorFor(frame);
      assert.deepEqual([e.code, e.details.field], ["validation_error", "frame"], frame);
    }
    const unknown = await errorFor({ type: "chat", id: "x1", content: "hola" });
    assert.deepEqual([unknown.code, unknown.id, unknown.details.field, unknown.details.got], ["validation_error", "x1", "type", "chat"]);
    assert.deepEqual(unknown.details.allowed, ["message", "abort", "ping", "watch_job", "unwatch_job"]);
    const missing = await errorFor({ content: "hola" });
    assert.deepEqual([missing.code, missing.details.field], ["validation_error", "type"]);
    assert.deepEqual(await stored(t.stack, u.userId), before);
  });

  it("wrong types and unknown fields name the field; the frame's id is echoed", async () => {
    const before = await stored(t.stack, u.userId);
    const cases: [unknown, string][] = [
      [{ type: "message", id: "w1", content: 42 }, "content"],
      [{ type: "message", id: "w2" }, "content"],
      [{ type: "message", id: "w3", content: "   " }, "content"],
      [{ type: "message", id: "w4", content: "hola", conversation_id: 5 }, "conversation_id"],
      [{ type: "message", id: "w5", content: "hola", options: { max_tokens: "many" } }, "options.max_tokens"],
      [{ type: "message", id: "w6", content: "hola", options: { max_tokens: 0 } }, "options.max_tokens"],
      [{ type: "message", id: "w7", content: "hola", options: { temperature: 9 } }, "options.temperature"],
      [{ type: "message", id: "w8", content: "hola", options: { stop: "x" } }, "options.stop"],
      [{ type: "message", id: "w9", content: "hola", contnet: "hola" }, "contnet"],
      [{ type: "message", id: "w10", content: "hola", options: { temprature: 0.5 } }, "options.temprature"],
      [{ type: "ping", id: "w11", extra: true }, "extra"],
      [{ type: "abort", id: "w12" }, "request_id"],
      [{ type: "abort", id: "w13", request_id: "a", ref: "b" }, "request_id"],
      [{ type: "abort", id: "w14", request_id: 12 }, "request_id"],
    ];
    for (const [frame, field] of cases) {
      const e = await errorFor(frame);
      const id = (frame as { id: string }).id;
      assert.deepEqual([e.code, e.details.field, e.id], ["validation_error", field, id], JSON.stringify(frame));
      assert.match(e.message, new RegExp(`^${field.replace(/\./g, "\\.")}: `));
    }
    // An id of the wrong type cannot be echoed, and says so.
    const badId = await errorFor({ type: "ping", id: { nested: true } });
    assert.deepEqual([badId.code, badId.details.field, "id" in badId], ["validation_error", "id", false]);
    assert.deepEqual(await stored(t.stack, u.userId), before);
  });

  it("a stop string is limited in UTF-8 bytes, as the engine limits it: 258 bytes is refused before anything is stored, 256 bytes runs", async () => {
    const before = await stored(t.stack, u.userId);
    // 129 characters, 258 bytes: within a limit counted in characters, beyond the engine's.
    const e = await errorFor({ type: "message", id: "s1", content: "hola", options: { stop: ["fin", "é".repeat(129)] } });
    assert.deepEqual([e.code, e.details.field, e.id, "request_id" in e], ["validation_error", "options.stop.1", "s1", false], JSON.stringify(e));
    assert.match(e.message, /^options\.stop\.1: .*256 bytes/);
    const ascii = await errorFor({ type: "message", id: "s2", content: "hola", options: { stop: ["x".repeat(257)] } });
    assert.deepEqual([ascii.code, ascii.details.field], ["validation_error", "options.stop.0"]);
    assert.deepEqual(await stored(t.stack, u.userId), before);

    c.send({ type: "message", id: "s3", content: "hola", options: { max_tokens: 2, stop: ["é".repeat(128), "x".repeat(256)] } });
    const end = await c.waitFor((f) => (f.type === "end" || f.type === "error") && f.id === "s3", "the 256-byte stop string's turn");
    assert.deepEqual([end.type, end.status], ["end", "COMPLETED"], JSON.stringify(end));
  });

  it("a binary frame is unsupported_media_type; the socket stays open", async () => {
    const before = await stored(t.stack, u.userId);
    const seen = c.frames.length;
    c.ws.send(Buffer.from(JSON.stringify({ type: "ping" })), { binary: true });
    const e = await c.waitFor((f) => c.frames.indexOf(f) >= seen && f.type === "error", "the binary frame's error");
    assert.equal(e.code, "unsupported_media_type");
    await errorFor("not json either");
    assert.deepEqual(await stored(t.stack, u.userId), before);
  });

  it("an unknown, malformed or another user's conversation is not_found; nothing is stored", async () => {
    const other = await t.user("ws-bad-other");
    const theirs = await t.stack.db.repos.conversations.create(other.userId, { title: "theirs" });
    const before = await stored(t.stack, u.userId);
    const theirsBefore = await stored(t.stack, other.userId);
    for (const conversationId of ["0b7c6f1e-3c1a-4b8e-9f7d-1a2b3c4d5e6f", "nope", theirs.id]) {
      const e = await errorFor({ type: "message", id: "nf", conversation_id: conversationId, content: "hola" });
      assert.deepEqual([e.code, e.id, "request_id" in e], ["not_found", "nf", false], conversationId);
      assert.equal(e.details.conversation, conversationId.toLowerCase());
    }
    assert.deepEqual(await stored(t.stack, u.userId), before);
    assert.deepEqual(await stored(t.stack, other.userId), theirsBefore);
  });

  it("a message to a conversation with a turn running is conversation_busy; the running turn is untouched", async () => {
    c.send({ type: "message", id: "long", content: "Cuéntame una historia muy larga", options: { max_tokens: 3000 } });
    const start = await c.waitFor((f) => f.type === "start" && f.id === "long", "the long turn's start");
    const before = await stored(t.stack, u.userId);
    const busy = await errorFor({ type: "message", id: "second", conversation_id: start.conversation_id, content: "¿y ahora?" });
    assert.deepEqual([busy.code, busy.id, busy.details.conversation_id], ["conversation_busy", "second", start.conversation_id]);
    assert.deepEqual(await stored(t.stack, u.userId), before, "the refused message stored nothing");
    c.send({ type: "abort", request_id: start.request_id });
    const end = await c.waitFor((f) => f.type === "end" && f.id === "long", "the long turn's end");
    assert.equal(end.status, "ABORTED");
  });

  it("an oversized frame closes the socket with 1009; invalid UTF-8 with 1007; the gateway serves on", async () => {
    const big = await connect(t, u.userId, u.key);
    const limit = t.stack.config.gateway.wsMaxFrameBytes;
    big.send({ type: "message", content: "x".repeat(limit + 1) });
    assert.equal((await big.closed).code, 1009);

    const utf8 = await connect(t, u.userId, u.key);
    utf8.ws.send(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { binary: false });
    assert.equal((await utf8.closed).code, 1007);

    const before = await stored(t.stack, u.userId);
    const fresh = await connect(t, u.userId, u.key);
    fresh.send({ type: "ping", id: "after" });
    await fresh.waitFor((f) => f.type === "pong", "a pong on a new socket");
    fresh.close();
    assert.deepEqual(await stored(t.stack, u.userId), before);
  });
});
