// A chat turn streams its reply as the engine makes it, stores exactly what
// it streamed, records the request COMPLETED with usage and timings, and the
// conversation's next turn reuses the engine's KV cache (same session id).
import assert from "node:assert/strict";
import type { EngineProcess } from "../src/engines/process";
import type { EnginePool } from "../src/engines/pool";
import { startEngine } from "./helpers/engines";
import { describeBackends } from "./helpers/postgres-backends";
import { chatArgs, deltas, last, runTurn, servingPool, userWithConversation } from "./helpers/turns";

describe("turn: streaming", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  before(async () => {
    engine = await startEngine({ kind: "inference", args: chatArgs(1024) });
    pool = await servingPool([engine.address!]);
  });
  after(async () => {
    pool?.close();
    await engine?.stop();
  });

  describeBackends("turn", (fx) => {
    it("stores the concatenation of the streamed deltas as the reply; the request is COMPLETED with usage", async () => {
      const db = await fx.openFresh();
      const ids = await userWithConversation(db);
      const arrivals: number[] = [];
      const events = await runTurn(db, pool, ids, "Hola, ¿qué tal?", { maxTokens: 24 }, (ev) => {
        if (ev.type === "delta") arrivals.push(Date.now());
      });

      assert.deepEqual(
        [...new Set(events.map((e) => e.type))],
        ["accepted", "started", "delta", "done"],
        `events in order: ${events.map((e) => e.type).join(",")}`,
      );
      const started = events[1]!;
      assert.equal(started.type, "started");
      const done = last(events, "done");
      const streamed = deltas(events).join("");
      assert.ok(streamed.length > 0, "something was streamed");
      assert.equal(done.text, streamed);
      assert.equal(done.status, "COMPLETED");
      assert.ok(done.usage.completionTokens > 0 && done.usage.completionTokens <= 24);
      assert.ok(arrivals.length >= 2 && arrivals[arrivals.length - 1]! >= arrivals[0]!);

      const req = await db.repos.requests.get(ids.userId, started.requestId);
      assert.deepEqual(
        [req.status, req.route, req.routeSource, req.engine, req.errorType],
        ["COMPLETED", "CHAT", "DEFAULT", engine.address, null],
      );
      assert.equal(req.promptTokens, started.promptTokens);
      assert.equal(req.completionTokens, done.usage.completionTokens);
      assert.ok(req.promptTokens! > 0 && req.ttftMs! > 0 && req.totalMs! >= req.ttftMs! && req.decodeMs! >= 0);
      assert.ok(req.startedAt && req.finishedAt && req.finishReason);

      const history = await db.repos.messages.recent(ids.userId, ids.conversationId, 10);
      assert.deepEqual(
        history.map((m) => [m.role, m.content, m.requestId]),
        [
          ["USER", "Hola, ¿qué tal?", req.id],
          ["ASSISTANT", streamed, req.id],
        ],
      );
      assert.equal(done.replyMessageId, history[1]!.id);
      // Counted while the engine generated (prompt.ts), stored with the outcome: the engine's exact count.
      const exact = await pool.inference[0]!.client.countTokens({ messages: [{ role: "user", content: "Hola, ¿qué tal?" }], chatTemplate: "", noGenerationPrompt: true });
      assert.equal(history[0]!.tokens, exact.tokens, "the user message's exact token count is stored");
      const conv = await db.repos.conversations.get(ids.userId, ids.conversationId);
      assert.equal(conv.engineAffinity, engine.address);
      assert.equal(pool.status()[0]!.inflight, 0, "the engine lease was released");
    });

    it("the conversation's second turn reuses the engine's KV cache", async () => {
      const db = await fx.openFresh();
      const ids = await userWithConversation(db);
      const first = await runTurn(db, pool, ids, "Me llamo Ana.", { maxTokens: 12 });
      assert.equal(last(first, "done").status, "COMPLETED");
      // Another conversation between the two turns: its own session, so it does not take this one's cache.
      const other = await userWithConversation(db, "other");
      assert.equal(last(await runTurn(db, pool, other, "Hello there, who are you?", { maxTokens: 12 }), "done").status, "COMPLETED");
      const second = await runTurn(db, pool, ids, "¿Cómo me llamo?", { maxTokens: 12 });
      const s1 = first[1]!;
      const s2 = second[1]!;
      assert.ok(s1.type === "started" && s2.type === "started");
      assert.equal(s2.historyMessages, 3, "the prompt holds both user messages and the first reply");
      assert.ok(s2.cachedTokens > 0, `second turn cached ${s2.cachedTokens} tokens`);
      assert.ok(s2.cachedTokens >= s1.promptTokens - 1, `cached ${s2.cachedTokens} < first prompt ${s1.promptTokens}`);
      const req = await db.repos.requests.get(ids.userId, s2.requestId);
      assert.equal(req.cachedTokens, s2.cachedTokens);
      assert.equal(last(second, "done").usage.cachedTokens, s2.cachedTokens);
      // The first reply had no count; the second turn measured it and stored it.
      const stored = await db.repos.messages.recent(ids.userId, ids.conversationId, 10);
      assert.equal(stored.length, 4);
      assert.ok(stored.slice(0, 3).every((m) => (m.tokens ?? 0) > 0), JSON.stringify(stored.map((m) => [m.role, m.tokens])));
    });

    it("a conversation that is not the user's is refused before anything is stored", async () => {
      const db = await fx.openFresh();
      const ids = await userWithConversation(db, "owner");
      const other = await db.repos.users.create({ username: "other" });
      await assert.rejects(runTurn(db, pool, { userId: other.id, conversationId: ids.conversationId }, "hola"), /not found/);
      assert.equal((await db.repos.messages.recent(ids.userId, ids.conversationId, 10)).length, 0);
    });
  });
});
