// What was committed is there after the process restarts: closed and
// reopened, and (embedded) after the process holding it was killed.
import assert from "node:assert/strict";
import { describeBackends, embeddedChild, freshPgliteDir, killChild } from "./helpers/postgres-backends";
import { openDatabase } from "../src/db/database";
import { silentLogger } from "../src/log";

describeBackends("persistence across a restart", (fx) => {
  it("keeps users, conversations, messages, requests and tool calls after close and reopen", async () => {
    const loc = await fx.fresh();
    const first = await fx.open(loc);
    const user = await first.repos.users.create({ username: "ana", displayName: "Ana" });
    const conv = await first.repos.conversations.create(user.id, { title: "Salón" });
    await first.repos.conversations.setAffinity(user.id, conv.id, "10.0.0.5:50051");
    const { request, message } = await first.repos.requests.beginTurn(user.id, conv.id, { content: "enciende la luz", traceId: "t-1" });
    await first.repos.requests.setRoute(user.id, request.id, { route: "COMMAND", source: "RULE", detail: "es.lights" });
    const call = await first.repos.toolCalls.create(user.id, request.id, { name: "mqtt.publish", arguments: { topic: "salon/luz", payload: "on" } });
    await first.repos.toolCalls.succeed(user.id, call.id, { ok: true });
    await first.repos.requests.endTurn(user.id, request.id, {
      status: "COMPLETED",
      reply: { content: "Luz del salón encendida.", tokens: 7 },
      promptTokens: 30,
      completionTokens: 7,
      engine: "10.0.0.5:50051",
    });
    const { secret } = await first.repos.apiKeys.create(user.id, { name: "cli", scopes: ["chat"] });
    await first.close();

    const second = await fx.open(loc);
    assert.deepEqual(second.migrations.applied, []);
    const c = await second.repos.conversations.get(user.id, conv.id);
    assert.equal(c.title, "Salón");
    assert.equal(c.engineAffinity, "10.0.0.5:50051");
    const history = await second.repos.messages.recent(user.id, conv.id, 10);
    assert.deepEqual(
      history.map((m) => [m.role, m.content]),
      [
        ["USER", "enciende la luz"],
        ["ASSISTANT", "Luz del salón encendida."],
      ],
    );
    assert.equal(history[0]!.id, message.id);
    const r = await second.repos.requests.get(user.id, request.id);
    assert.deepEqual([r.status, r.route, r.routeSource, r.traceId, r.completionTokens], ["COMPLETED", "COMMAND", "RULE", "t-1", 7]);
    const [tc] = await second.repos.toolCalls.listByRequest(user.id, request.id);
    assert.deepEqual([tc!.status, tc!.arguments, tc!.result], ["SUCCEEDED", { topic: "salon/luz", payload: "on" }, { ok: true }]);
    assert.equal((await second.repos.apiKeys.authenticate(secret))?.user.id, user.id);
  });
});

describe("persistence across a killed process (embedded)", function () {
  this.timeout(60_000);

  it("keeps what a process committed before it was killed with SIGKILL", async () => {
    const dir = await freshPgliteDir();
    const writer = embeddedChild(dir, "write");
    const { committed } = (await writer.next()) as { committed: { userId: string; conversationId: string } };
    await killChild(writer); // no close(), no checkpoint: only what COMMIT wrote
    assert.equal(writer.proc.signalCode, "SIGKILL");

    const db = await openDatabase({ dataDir: dir, logger: silentLogger });
    try {
      const conv = await db.repos.conversations.get(committed.userId, committed.conversationId);
      assert.equal(conv.title, "before the kill");
      const history = await db.repos.messages.recent(committed.userId, committed.conversationId, 10);
      assert.deepEqual(history.map((m) => m.content), ["hola", "¡hola!"]);
    } finally {
      await db.close();
    }
  });
});
