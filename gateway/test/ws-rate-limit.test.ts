// Limits on the chat socket: each message frame takes one request from the
// credential's rate bucket (rate_limited with retry_after_s when empty), and
// a credential's concurrent turns are capped across all its sockets and
// interfaces (too_many_streams). Both are error frames: the socket survives
// and nothing is stored for the refused message.
import assert from "node:assert/strict";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { connect, stored } from "./helpers/ws-client";

describe("ws: rate and stream limits", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let u: TestUser;
  before(async () => {
    t = await startTestGateway({ embeddings: false, ctxSize: 8192, env: { JOTA_RATE_LIMIT: "1", JOTA_RATE_BURST: "2", JOTA_MAX_STREAMS: "1" } });
    u = await t.user("ws-limits");
  });
  after(() => t?.close());

  it("a second concurrent turn is too_many_streams; a third message is rate_limited; pings are not limited", async () => {
    const c = await connect(t, u.userId, u.key);
    c.send({ type: "message", id: "first", content: "Cuéntame una historia muy larga", options: { max_tokens: 6000 } });
    const start = await c.waitFor((f) => f.type === "start", "the first turn's start");
    const before = await stored(t.stack, u.userId);

    c.send({ type: "message", id: "second", content: "Otra conversación" });
    const streams = await c.waitFor((f) => f.id === "second", "the second message's answer");
    assert.deepEqual([streams.type, streams.code, streams.details.limit], ["error", "too_many_streams", 1]);

    c.send({ type: "message", id: "third", content: "Y otra" });
    const limited = await c.waitFor((f) => f.id === "third", "the third message's answer");
    assert.deepEqual([limited.type, limited.code, limited.details.limit_per_min], ["error", "rate_limited", 1]);
    assert.ok(Number.isInteger(limited.details.retry_after_s) && limited.details.retry_after_s >= 1);

    for (let i = 0; i < 5; i++) c.send({ type: "ping", id: `p${i}` });
    await c.waitFor((f) => f.id === "p4", "the fifth pong");
    assert.deepEqual(await stored(t.stack, u.userId), before, "the refused messages stored nothing");

    c.send({ type: "abort", request_id: start.request_id });
    assert.equal((await c.waitFor((f) => f.type === "end", "end")).status, "ABORTED");
    c.close();
  });
});
