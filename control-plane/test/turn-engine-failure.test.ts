// The engine serving a turn dies (SIGKILL) mid-stream: the turn ends FAILED
// with a cause that names the engine, the user's message is kept, the pool
// knows the engine is gone, and the conversation's next turn is served by
// the other engine, which rebuilds the context from the stored history.
import assert from "node:assert/strict";
import { status, type ServiceError } from "@grpc/grpc-js";
import type { EngineProcess } from "../src/engines/process";
import type { EnginePool } from "../src/engines/pool";
import { silentLogger } from "../src/log";
import { openDatabase, type Database } from "../src/db/database";
import { processGone, startEngine } from "./helpers/engines";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { servingBasics, stubEngine } from "./helpers/stub-engine";
import { chatArgs, deltas, last, runTurn, servingPool, userWithConversation, waitUntil } from "./helpers/turns";

describe("turn: engine killed mid-turn (pglite)", function () {
  this.timeout(120_000);
  let engines: EngineProcess[];
  let pool: EnginePool;
  let db: Database;
  before(async () => {
    const [a, b, d] = await Promise.all([
      startEngine({ kind: "inference", args: chatArgs(8192) }),
      startEngine({ kind: "inference", args: chatArgs(8192) }),
      openDatabase({ dataDir: await freshPgliteDir(), logger: silentLogger }),
    ]);
    engines = [a, b];
    db = d;
    pool = await servingPool(engines.map((e) => e.address!));
  });
  after(async () => {
    pool?.close();
    await Promise.all([...(engines ?? []).map((e) => e.stop()), db?.close()]);
  });

  it("FAILED with a clear cause, user message kept; the next turn goes to the other engine", async () => {
    const ids = await userWithConversation(db, "failover");
    const first = await runTurn(db, pool, ids, "Hola", { maxTokens: 8 });
    assert.equal(last(first, "done").status, "COMPLETED");
    const firstEngine = (first[1] as { engine: string }).engine;

    let killed: EngineProcess | undefined;
    const events = await runTurn(db, pool, ids, "Escribe un poema larguísimo", { maxTokens: 6000 }, (ev, all) => {
      if (ev.type === "delta" && deltas(all).length === 3 && !killed) {
        const started = all[1]!;
        assert.equal(started.type, "started");
        killed = engines.find((e) => e.address === (started as { engine: string }).engine)!;
        process.kill(killed.pid!, "SIGKILL");
      }
    });
    assert.ok(killed, "the serving engine was killed mid-stream");
    assert.equal(killed.address, firstEngine, "the second turn went back to the conversation's engine (affinity)");
    await waitUntil(() => processGone(killed!.pid!) || killed!.state !== "ready", "engine process gone", 5000);

    const err = last(events, "error");
    assert.equal(err.status, "FAILED");
    assert.equal(err.errorType, "ENGINE_ERROR");
    assert.match(err.message, new RegExp(`^engine ${killed.address} (went away|failed) mid-turn, after \\d+ generated tokens: Generate on engine`));
    const failed = await db.repos.requests.get(ids.userId, err.requestId);
    assert.deepEqual([failed.status, failed.errorType, failed.error, failed.engine], ["FAILED", "ENGINE_ERROR", err.message, killed.address]);
    assert.ok(failed.finishedAt && failed.completionTokens! >= 3);

    // The user's message is kept; half an answer is not stored as the reply.
    let history = await db.repos.messages.recent(ids.userId, ids.conversationId, 10);
    assert.deepEqual(history.map((m) => [m.role, m.requestId === err.requestId]).slice(2), [["USER", true]]);
    assert.equal(history[2]!.content, "Escribe un poema larguísimo");

    // The pool already knows; the next turn is served by the other engine.
    assert.equal(pool.status().find((s) => s.address === killed!.address)!.health, "down");
    const other = engines.find((e) => e !== killed)!;
    const next = await runTurn(db, pool, ids, "¿Sigues ahí?", { maxTokens: 8 });
    const started = next[1]!;
    assert.ok(started.type === "started");
    assert.equal(started.engine, other.address);
    assert.equal(started.cachedTokens, 0, "the new engine had no cache: it prefilled the stored history");
    assert.equal(started.historyMessages, 4, "the whole stored history went to the new engine");
    const done = last(next, "done");
    assert.equal(done.status, "COMPLETED");
    assert.equal((await db.repos.requests.get(ids.userId, done.requestId)).engine, other.address);
    assert.equal((await db.repos.conversations.get(ids.userId, ids.conversationId)).engineAffinity, other.address);
    history = await db.repos.messages.recent(ids.userId, ids.conversationId, 10);
    assert.deepEqual(history.map((m) => m.role), ["USER", "ASSISTANT", "USER", "USER", "ASSISTANT"]);
  });
});

describe("turn: engine gone or full before it streams (pglite)", function () {
  this.timeout(120_000);

  // An engine that looks healthy but whose Generate fails at once (a stub: a real engine cannot be made to do this on demand).
  const cases = [
    { name: "gone (UNAVAILABLE): the pool marks it down at once", code: status.UNAVAILABLE, details: "Connection dropped", markedDown: true },
    {
      name: "full (RESOURCE_EXHAUSTED: its queue filled between the pool's Info polls): it stays up",
      code: status.RESOURCE_EXHAUSTED,
      details: "all 4 slots are busy and the wait queue (8) is full",
      markedDown: false,
    },
  ];
  for (const c of cases) {
    it(`${c.name}; the turn moves to another engine and completes there`, async () => {
      let generateCalls = 0;
      const engine = await stubEngine({
        ...servingBasics,
        generate: (call) => {
          generateCalls++;
          call.emit("error", { code: c.code, details: c.details } as ServiceError);
        },
      });
      const stub = engine.address;
      const [real, db] = await Promise.all([
        startEngine({ kind: "inference", args: chatArgs(1024) }),
        openDatabase({ dataDir: await freshPgliteDir(), logger: silentLogger }),
      ]);
      const pool = await servingPool([stub, real.address!]);
      try {
        const ids = await userWithConversation(db, "moved");
        await db.repos.conversations.setAffinity(ids.userId, ids.conversationId, stub); // its KV cache "is" on the stub
        const downs: string[] = [];
        pool.on("change", (st: { address: string; health: string; reason?: string }) => st.health === "down" && downs.push(`${st.address} ${st.reason}`));
        const events = await runTurn(db, pool, ids, "Hola", { maxTokens: 8 });
        assert.equal(generateCalls, 1, "the conversation's own engine was tried first");
        const started = events[1]!;
        assert.ok(started.type === "started", JSON.stringify(started));
        assert.equal(started.engine, real.address);
        const done = last(events, "done");
        assert.equal(done.status, "COMPLETED");
        const req = await db.repos.requests.get(ids.userId, done.requestId);
        assert.deepEqual([req.status, req.engine], ["COMPLETED", real.address]);
        assert.equal((await db.repos.conversations.get(ids.userId, ids.conversationId)).engineAffinity, real.address);
        // The lease was released with the error: a gone engine is marked down at once (it reconnects by itself), a full one is not.
        const name = c.code === status.UNAVAILABLE ? "UNAVAILABLE" : "RESOURCE_EXHAUSTED";
        assert.deepEqual(downs, c.markedDown ? [`${stub} Generate on engine ${stub}: ${name}: ${c.details}`] : []);
      } finally {
        pool.close();
        engine.stop();
        await Promise.all([real.stop(), db.close()]);
      }
    });
  }
});
