// Heartbeats: the server pings every socket; one that has not answered by
// the next beat is a dead peer and is terminated, which aborts its turns. A
// live client (its library answers pings) is never cut. The endpoint under
// test shares the gateway's context but has its own server, so the beat can
// be half a second instead of 30 s.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { attachWebSockets, type WebSockets } from "../src/ws/server";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { connect } from "./helpers/ws-client";

describe("ws: heartbeats", function () {
  this.timeout(120_000);
  // Short for a test, long enough that the event loop's pauses (PGlite runs in this process) never look like a dead peer.
  const BEAT_MS = 500;
  let t: TestGateway;
  let u: TestUser;
  let server: http.Server;
  let sockets: WebSockets;
  let url: string;
  before(async () => {
    t = await startTestGateway({ embeddings: false, ctxSize: 8192 });
    u = await t.user("ws-beat");
    server = http.createServer();
    sockets = attachWebSockets(server, t.gw.ctx, { heartbeatMs: BEAT_MS });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await sockets?.close();
    server?.close();
    await t?.close();
  });

  it("a live client answers the pings and stays connected", async () => {
    const c = await connect({ url }, u.userId, u.key);
    let pings = 0;
    c.ws.on("ping", () => pings++);
    await new Promise((r) => setTimeout(r, BEAT_MS * 6));
    assert.ok(pings >= 4, `the server pinged (${pings} pings)`);
    assert.equal(c.ws.readyState, c.ws.OPEN);
    c.send({ type: "ping", id: "still" });
    await c.waitFor((f) => f.type === "pong", "pong");
    c.close();
  });

  it("a peer that stops answering pings is terminated and its running turn aborted", async () => {
    const c = await connect({ url }, u.userId, u.key, { clientOptions: { autoPong: false } });
    // Answers pings by hand until its turn streams, then falls silent.
    let answering = true;
    c.ws.on("ping", (data) => answering && c.ws.pong(data));
    c.send({ type: "message", id: "m", content: "Cuéntame una historia muy larga", options: { max_tokens: 6000 } });
    const start = await c.waitFor((f) => f.type === "start", "start");
    answering = false;
    const t0 = Date.now();
    const closed = await c.closed;
    const waited = Date.now() - t0;
    // Terminated, not closed: a dead peer gets no close handshake (the client sees 1006).
    assert.equal(closed.code, 1006);
    // Two beats at most, plus slack for a loaded machine; uncut, the turn would stream for many seconds.
    assert.ok(waited < BEAT_MS * 6, `cut within two beats (${waited} ms)`);
    assert.ok(c.frames.every((f) => f.type !== "end"), "cut before the turn ended");
    const end = Date.now() + 5000;
    let status = "";
    while (Date.now() < end && (status = (await t.stack.db.repos.requests.get(u.userId, start.request_id)).status) !== "ABORTED")
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(status, "ABORTED");
  });
});
