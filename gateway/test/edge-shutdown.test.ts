// Stopping the gateway with devices connected: open Converse streams end
// with UNAVAILABLE, their running turn is recorded ABORTED with its partial
// reply, health watchers hear NOT_SERVING, new calls are refused, and close()
// returns without waiting for the devices.
import assert from "node:assert/strict";
import { credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { HealthCheckResponse_ServingStatus as Serving, HealthClient, type HealthCheckResponse } from "@jota/control-plane/gen/grpc/health/v1/health";
import type { ConversationLocks } from "@jota/control-plane";
import { startTestGateway, type TestGateway } from "./helpers/gateway";
import { assistantClient, auth, chat, chunked, converse, deviceToken, jfkPcm, turnsOf, until } from "./helpers/edge";

describe("edge gRPC: shutdown", function () {
  this.timeout(180_000);
  let t: TestGateway;
  before(async () => {
    t = await startTestGateway({ transcription: true });
  });
  after(() => t?.close());

  it("ends open streams UNAVAILABLE, aborts their turns, tells health watchers, refuses new calls", async () => {
    const user = await t.user("late-night");
    const dev = await deviceToken(t, user.userId, "bedroom");
    const client = assistantClient(t);
    const health = new HealthClient(t.grpcAddress, credentials.createInsecure());
    try {
      const watched: Serving[] = [];
      const watchEnded = new Promise<status>((resolve) => {
        const w = health.watch({ service: "jota.v1.Assistant" }, new Metadata());
        w.on("data", (r: HealthCheckResponse) => watched.push(r.status));
        w.on("error", (e: ServiceError) => resolve(e.code));
        w.on("end", () => resolve(status.OK));
      });

      const run = converse(client, auth(dev.token)).config();
      await run.audio(chunked(jfkPcm().subarray(0, 3 * 32000), 3200));
      run.endOfAudio();
      const delta = await run.waitFor("the reply streaming", (e) => e.$case === "replyDelta");
      const turn = turnsOf(run.events.slice(0, delta + 1)).at(-1)!;
      const requestId = turn.intent!.requestId;

      const t0 = Date.now();
      await t.gw.close();
      assert.ok(Date.now() - t0 < 5000, `close() took ${Date.now() - t0} ms`);

      const ended = await run.done;
      assert.equal(ended.code, status.UNAVAILABLE);
      assert.match(ended.details, /the server is stopping/);
      assert.deepEqual(ended.metadata?.get("jota-error-code"), ["unavailable"]);
      const req = await t.stack.db.repos.requests.get(user.userId, requestId);
      assert.deepEqual([req.status, req.finishReason], ["ABORTED", "cancelled"]);
      const [, reply] = await t.stack.db.repos.messages.ofRequest(user.userId, requestId);
      assert.ok(reply!.content.startsWith(turn.deltas.join("")));

      assert.equal(await watchEnded, status.OK);
      assert.deepEqual([watched[0], watched.at(-1)], [Serving.SERVING, Serving.NOT_SERVING]);

      const refused = await chat(client, auth(dev.token), { text: "¿hola?" });
      assert.notEqual(refused.code, status.OK, "the port no longer serves");
    } finally {
      client.close();
      health.close();
    }
  });

  it("a Converse call authenticated after the shutdown began is refused UNAVAILABLE at once, not cut at the end of the grace", async () => {
    // Its own gateway: the one above is closed by now.
    const own = await startTestGateway({ transcription: true });
    const client = assistantClient(own);
    const repo = own.stack.db.repos.devices;
    const authenticate = repo.authenticate;
    try {
      const user = await own.user("insomniac");
      const dev = await deviceToken(own, user.userId, "hallway");
      let asked = false;
      // The device token is still being checked when close() begins.
      repo.authenticate = async (...args: Parameters<typeof authenticate>) => {
        asked = true;
        await new Promise((r) => setTimeout(r, 300));
        return authenticate.apply(repo, args);
      };
      const run = converse(client, auth(dev.token)).config();
      await until("the call's authentication", () => asked);
      const t0 = Date.now();
      await own.gw.close();
      const ended = await run.done;
      const took = Date.now() - t0;
      assert.equal(ended.code, status.UNAVAILABLE, ended.details);
      assert.match(ended.details, /the server is stopping/);
      assert.deepEqual(ended.metadata?.get("jota-error-code"), ["unavailable"]);
      // The grace is 5 s: a call that only ends when it is cut takes all of it.
      assert.ok(took < 2000, `the call ended ${took} ms after close() began`);
    } finally {
      repo.authenticate = authenticate;
      client.close();
      await own.close();
    }
  });

  it("a Chat call whose turn waits for a busy conversation ends UNAVAILABLE when the server stops, not INTERNAL", async () => {
    const own = await startTestGateway({ transcription: false });
    const client = assistantClient(own);
    const locks = (own.stack.runner as unknown as { deps: { locks: ConversationLocks } }).deps.locks;
    try {
      const user = await own.user("queued");
      const dev = await deviceToken(own, user.userId, "doorbell");
      const conv = await own.stack.db.repos.conversations.create(user.userId);
      const release = await locks.acquire(conv.id);
      const call = chat(client, auth(dev.token), { conversationId: conv.id, text: "¿Hay alguien?" });
      await new Promise((r) => setTimeout(r, 300)); // the turn waits for the conversation now
      await own.gw.close();
      release();
      const ended = await call;
      assert.equal(ended.code, status.UNAVAILABLE, ended.details);
      assert.match(ended.details, /the server is stopping/);
      assert.deepEqual(ended.metadata?.get("jota-error-code"), ["unavailable"]);
    } finally {
      client.close();
      await own.close();
    }
  });
});
