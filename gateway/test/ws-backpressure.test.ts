// A slow reader never makes the server buffer without bound, and never loses
// a token: past the high water mark a turn's tokens are merged into fewer
// frames (`count` says how many deltas each carries), and the turn itself runs
// at the engine's pace. A client that sends without reading gets its socket's
// reading paused, so replies cannot pile up either; every reply still arrives.
//
// The endpoint here shares the gateway's context but listens on a Unix
// socket, with a 4 KiB high water mark: a Unix socket's kernel buffers take
// a few hundred small writes where loopback TCP takes megabytes, so a paused
// reader reaches the server's own buffer after a few hundred tokens.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { attachWebSockets, type WebSockets } from "../src/ws/server";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { connect, tokenText } from "./helpers/ws-client";

describe("ws: a slow reader", function () {
  this.timeout(180_000);
  let t: TestGateway;
  let u: TestUser;
  let server: http.Server;
  let sockets: WebSockets;
  let dir: string;
  let url: string;
  before(async () => {
    t = await startTestGateway({ embeddings: false, ctxSize: 8192 });
    u = await t.user("ws-slow");
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "jota-ws-"));
    const sock = path.join(dir, "gw.sock");
    server = http.createServer();
    // A reader paused for a whole heartbeat is judged dead (by design); the turn here may take longer than the default 30 s beat on a busy machine.
    sockets = attachWebSockets(server, t.gw.ctx, { highWaterBytes: 4096, lowWaterBytes: 1024, heartbeatMs: 600_000 });
    await new Promise<void>((r) => server.listen(sock, () => r()));
    url = `ws+unix://${sock}:`;
  });
  after(async () => {
    await sockets?.close();
    server?.close();
    await t?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const metric = async (labels: Record<string, string>) => {
    const m = await t.gw.ctx.metrics.registry.getSingleMetric("jota_ws_frames_total")!.get();
    return m.values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((s, v) => s + v.value, 0);
  };

  it("a reader paused mid-turn gets every token, in fewer frames; the turn ran on meanwhile", async () => {
    const c = await connect({ url }, u.userId, u.key);
    const MAX = 1000;
    c.send({ type: "message", id: "slow", content: "Cuéntame una historia muy larga", options: { max_tokens: MAX } });
    const start = await c.waitFor((f) => f.type === "start", "start");
    c.ws.pause();
    // The turn finishes while nobody reads it: the reader does not slow it.
    const deadline = Date.now() + 120_000;
    let status = "";
    while ((status = (await t.stack.db.repos.requests.get(u.userId, start.request_id)).status) !== "COMPLETED" && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    assert.equal(status, "COMPLETED");
    const readWhilePaused = c.frames.length;
    c.ws.resume();
    const end = await c.waitFor((f) => f.type === "end", "end");
    assert.ok(c.frames.length > readWhilePaused, "the rest came after the reader resumed");

    const tokens = c.turnFrames(start.request_id).filter((f) => f.type === "token");
    const deltas = tokens.reduce((n, f) => n + f.count, 0);
    const reply = await t.stack.db.repos.messages.get(u.userId, end.message_id);
    assert.equal(tokenText(tokens), reply.content, "no token lost, none repeated, in order");
    assert.ok(end.usage.completion_tokens > MAX / 2, `a long reply (${end.usage.completion_tokens} tokens)`);
    assert.ok(tokens.some((f) => f.count > 1), "some frames carry several deltas");
    assert.ok(tokens.length < deltas / 2, `far fewer frames (${tokens.length}) than deltas (${deltas})`);
    for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]!.index > tokens[i - 1]!.index, "each frame's index is its first token's");
    assert.equal(end.id, "slow");
    c.close();
  });

  it("a client that sends without reading gets its reading paused; every pong arrives once it reads", async () => {
    const c = await connect({ url }, u.userId, u.key);
    c.ws.pause();
    const N = 20_000;
    const before = await metric({ direction: "in", type: "ping" });
    for (let i = 0; i < N; i++) c.send({ type: "ping", id: i });
    await new Promise((r) => setTimeout(r, 1500));
    const read = (await metric({ direction: "in", type: "ping" })) - before;
    assert.ok(read < N / 2, `the server stopped reading (${read} of ${N} pings read)`);
    c.ws.resume();
    await c.waitFor((f) => f.id === N - 1, "the last pong", 60_000);
    assert.equal(c.frames.length, N);
    assert.ok(c.frames.every((f, i) => f.type === "pong" && f.id === i), "every pong, in order");
    c.close();
  });
});
