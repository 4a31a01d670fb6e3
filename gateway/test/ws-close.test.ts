// A socket that closes mid-stream takes its turns with it: the engine stops
// (its cancellation counter rises, its slot frees), and each turn is stored
// ABORTED with the reply generated so far. The endpoint's close() (the
// gateway stopping) says "going away" (1001) to its sockets, with the same
// effect on their turns.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { attachWebSockets } from "../src/ws/server";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { connect, tokenText } from "./helpers/ws-client";

async function waitUntil(cond: () => Promise<boolean>, what: string, ms = 5000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("ws: closing the socket aborts its turns", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let u: TestUser;
  const LONG = { max_tokens: 6000 };
  before(async () => {
    t = await startTestGateway({ embeddings: false, ctxSize: 8192 });
    u = await t.user("ws-close");
  });
  after(() => t?.close());

  const info = () => t.stack.pool.inference[0]!.client.info();
  const status = (id: string) => t.stack.db.repos.requests.get(u.userId, id).then((r) => r.status);

  it("the client closes mid-stream: the engine stops, both turns are stored ABORTED with their partial replies", async () => {
    const c = await connect(t, u.userId, u.key);
    const before = (await info()).counters!;
    c.send({ type: "message", id: "one", content: "Cuéntame una historia muy larga", options: LONG });
    c.send({ type: "message", id: "two", content: "Y otra historia distinta", options: LONG });
    const starts = await Promise.all(["one", "two"].map((id) => c.waitFor((f) => f.type === "start" && f.id === id, `start ${id}`)));
    await c.waitFor(() => starts.every((s) => c.turnFrames(s.request_id).filter((f) => f.type === "token").length >= 3), "tokens of both");
    assert.equal((await info()).slotsBusy, 2);
    c.close();
    await c.closed;

    for (const s of starts) await waitUntil(async () => (await status(s.request_id)) === "ABORTED", `request ${s.id} ABORTED`);
    await waitUntil(async () => (await info()).slotsBusy === 0, "slots freed");
    const after = (await info()).counters!;
    assert.equal(Number(after.cancellations) - Number(before.cancellations), 2);
    const settled = after.generatedTokens;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await info()).counters!.generatedTokens, settled, "nothing decodes on");

    for (const s of starts) {
      const req = await t.stack.db.repos.requests.get(u.userId, s.request_id);
      assert.equal(req.finishReason, "cancelled");
      const [, reply] = await t.stack.db.repos.messages.ofRequest(u.userId, s.request_id);
      // The client may not have read the last tokens before it closed: what it got is the start of what is stored.
      const got = tokenText(c.turnFrames(s.request_id));
      assert.ok(reply && reply.content.startsWith(got) && got.length > 0, `stored ${JSON.stringify(reply?.content)} starts with ${JSON.stringify(got)}`);
      assert.ok(req.completionTokens! < LONG.max_tokens);
    }
  });

  it("close() of the endpoint closes its sockets with 1001 and aborts their turns", async () => {
    // A second endpoint over the same gateway context, on its own server, so this gateway stays up for after().
    const server = http.createServer();
    const sockets = attachWebSockets(server, t.gw.ctx);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const c = await connect({ url }, u.userId, u.key);
      c.send({ type: "message", id: "bye", content: "Una historia larga", options: LONG });
      const start = await c.waitFor((f) => f.type === "start", "start");
      await sockets.close();
      const closed = await c.closed;
      assert.deepEqual([closed.code, closed.reason], [1001, "server shutting down"]);
      await waitUntil(async () => (await status(start.request_id)) === "ABORTED", "the turn ABORTED");
      await waitUntil(async () => (await info()).slotsBusy === 0, "slot freed");
    } finally {
      server.close();
    }
  });
});
