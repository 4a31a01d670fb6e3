// The memory queue end to end, all real: a private redis-server, BullMQ, a
// jota-inference with the tiny chat and embedding models, PGlite with
// pgvector. Extraction and summary jobs run after turns as the stack queues
// them; a burst of turns is read by one extraction; the nightly upkeep is a
// repeatable job at the configured time, and run now it deduplicates,
// re-embeds and prunes old request records.
import assert from "node:assert/strict";
import { openDatabase, type Database } from "../src/db/database";
import type { EnginePool } from "../src/engines/pool";
import type { EngineProcess } from "../src/engines/process";
import { dailyPattern, MemoryQueue, startMemoryWorker, type MemoryWorker } from "../src/jobs/memory";
import type { RedisHandle } from "../src/jobs/redis";
import { silentLogger } from "../src/log";
import type { ExtractionResult } from "../src/memory/extraction";
import { Memories, MEMORY_KIND } from "../src/memory/memories";
import { INTERRUPTED, type UpkeepResult } from "../src/memory/upkeep";
import { PgVectorStore } from "../src/memory/vector";
import { requireFile, startEngine, testModel } from "./helpers/engines";
import { poolOf, startRedis } from "./helpers/jobs";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { chatArgs, runTurn, servingPool, userWithConversation } from "./helpers/turns";

describe("jobs: memory extraction, summaries and upkeep through the queue", function () {
  this.timeout(180_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let db: Database;
  let store: PgVectorStore;
  let redis: RedisHandle;
  let queue: MemoryQueue;
  let worker: MemoryWorker;
  let memories: Memories;

  before(async () => {
    const dir = await freshPgliteDir();
    [engine, redis, db] = await Promise.all([
      startEngine({ kind: "inference", args: [...chatArgs(2048), "--embed-model", requireFile(testModel("tiny-embed.gguf"))] }),
      startRedis(),
      openDatabase({ dataDir: dir, logger: silentLogger }),
    ]);
    store = await PgVectorStore.open({ dataDir: dir });
    pool = await servingPool([engine.address!]);
    memories = new Memories(db.repos, store, pool);
    queue = new MemoryQueue({ connection: redis.connection, extractDelayMs: 6000, backoffMs: 10 });
    worker = startMemoryWorker({ connection: redis.connection, repos: db.repos, memories, pool, logger: silentLogger, sql: db.sql });
  });
  after(async () => {
    await worker?.close();
    await queue?.close();
    await redis?.close();
    await store?.close();
    await db?.close();
    pool?.close();
    await engine?.stop();
  });

  async function finished(id: string, timeoutMs = 60_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await queue.queue.getJob(id);
      const state = job ? await job.getState() : "missing";
      if (job && (state === "completed" || state === "failed")) return { state, job };
      if (Date.now() > deadline) throw new Error(`job ${id} is ${state} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  it("dailyPattern: HH:MM as a daily cron pattern; anything else refused", () => {
    assert.equal(dailyPattern("03:00"), "0 3 * * *");
    assert.equal(dailyPattern("23:59"), "59 23 * * *");
    assert.equal(dailyPattern("7:05"), "5 7 * * *");
    for (const bad of ["24:00", "3", "03:60", "noon", ""]) assert.throws(() => dailyPattern(bad), RangeError, bad);
  });

  it("a burst of turns: the first extraction reads them all, the later ones find nothing new", async () => {
    // Three 8-token turns take well under the 6 s delay, even on a loaded machine: the first job runs after all three.
    const ids = await userWithConversation(db, "burst");
    const jobIds: string[] = [];
    for (const content of ["Trabajo de enfermera en el turno de noche.", "Mi hermana se llama Irene.", "Los jueves voy a nadar."]) {
      const events = await runTurn(db, pool, ids, content, { maxTokens: 8 });
      const done = events.at(-1) as Extract<(typeof events)[number], { type: "done" }>;
      jobIds.push(await queue.extract({ ...ids, requestId: done.requestId }));
    }
    const results = [];
    for (const id of jobIds) {
      const { state, job } = await finished(id);
      assert.equal(state, "completed", job.failedReason);
      results.push(job.returnvalue as ExtractionResult);
    }
    const read = results.filter((r) => !r.skipped);
    assert.equal(read.length, 1, `one job read the burst: ${JSON.stringify(results)}`);
    assert.ok(results.filter((r) => r.skipped).every((r) => r.skipped === "no new messages"));
    const last = (await db.repos.messages.recent(ids.userId, ids.conversationId, 1))[0]!;
    assert.equal((await db.repos.conversations.get(ids.userId, ids.conversationId)).memoriesThroughId, last.id);
    // Whatever the random model extracted is stored with its vector.
    const rows = await db.repos.memories.all(ids.userId);
    assert.equal(rows.length, read[0]!.added);
    for (const r of rows) assert.equal(await store.count(r.collection!, { userId: ids.userId, kind: MEMORY_KIND, source: `memory:${r.id}` }), 1);
  });

  it("the same summary asked twice is one job; it completes with the summary stored", async () => {
    const ids = await userWithConversation(db, "sum");
    const msgs = [];
    for (let i = 0; i < 6; i++)
      msgs.push(await db.repos.messages.append(ids.userId, ids.conversationId, { role: i % 2 ? "ASSISTANT" : "USER", content: `Mensaje ${i} sobre el viaje a Lisboa.` }));
    const a = await queue.summarize({ ...ids, throughId: msgs[3]!.id });
    const b = await queue.summarize({ ...ids, throughId: msgs[3]!.id });
    assert.equal(a, b);
    const { state, job } = await finished(a);
    assert.equal(state, "completed", job.failedReason);
    assert.equal((job.returnvalue as { summarized: number }).summarized, 4);
    const conv = await db.repos.conversations.get(ids.userId, ids.conversationId);
    assert.equal(conv.summaryThroughId, msgs[3]!.id);
    assert.ok(conv.summary);
  });

  it("a summary that failed is done when asked again, not ignored for its id", async () => {
    const ids = await userWithConversation(db, "sumfail");
    const msgs = [];
    for (let i = 0; i < 4; i++)
      msgs.push(await db.repos.messages.append(ids.userId, ids.conversationId, { role: i % 2 ? "ASSISTANT" : "USER", content: `Mensaje ${i} sobre la mudanza a Gijón.` }));
    const name = "jota-memory-resubmit";
    const q = new MemoryQueue({ connection: redis.connection, name, backoffMs: 5 });
    const nowhere = await poolOf(["127.0.0.1:1"], false); // no engine: every attempt fails
    let w = startMemoryWorker({ connection: redis.connection, repos: db.repos, memories, pool: nowhere, logger: silentLogger, queueName: name });
    const wait = async (id: string) => {
      for (const deadline = Date.now() + 60_000; ; ) {
        const job = await q.queue.getJob(id);
        const state = job ? await job.getState() : "missing";
        if (job && (state === "completed" || state === "failed")) return { state, job };
        if (Date.now() > deadline) throw new Error(`job ${id} is ${state}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    try {
      const id = await q.summarize({ ...ids, throughId: msgs[1]!.id });
      assert.equal((await wait(id)).state, "failed");
      await w.close();
      w = startMemoryWorker({ connection: redis.connection, repos: db.repos, memories, pool, logger: silentLogger, queueName: name });
      // The next turn that trims the same history asks for the same summary.
      assert.equal(await q.summarize({ ...ids, throughId: msgs[1]!.id }), id);
      const { state, job } = await wait(id);
      assert.equal(state, "completed", job.failedReason);
      assert.equal((await db.repos.conversations.get(ids.userId, ids.conversationId)).summaryThroughId, msgs[1]!.id);
    } finally {
      await w.close();
      await q.close();
      nowhere.close();
    }
  });

  it("upkeep: scheduled daily at the configured time; run now, it deduplicates, re-embeds and prunes old requests", async () => {
    await queue.scheduleUpkeep("04:30", { retentionDays: 30 });
    await queue.scheduleUpkeep("03:15", { retentionDays: 30 }); // replaces, never adds
    const schedulers = await queue.queue.getJobSchedulers();
    assert.equal(schedulers.length, 1);
    assert.equal(schedulers[0]!.pattern, "15 3 * * *");
    assert.ok(schedulers[0]!.next && schedulers[0]!.next > Date.now());

    const ids = await userWithConversation(db, "upkeep");
    // Two rows of the same text (written straight: add() would refuse the second), one never embedded.
    await db.repos.memories.create(ids.userId, { text: "Upkeep likes jazz" });
    await db.repos.memories.create(ids.userId, { text: "upkeep LIKES jazz" });
    // A finished request from long ago, one from now, and a running one from long ago.
    const old = await runTurn(db, pool, ids, "Hola", { maxTokens: 2 });
    const recent = await runTurn(db, pool, ids, "Hola otra vez", { maxTokens: 2 });
    const oldId = (old.at(-1) as { requestId: string }).requestId;
    const recentId = (recent.at(-1) as { requestId: string }).requestId;
    const long = new Date(Date.now() - 40 * 86_400_000);
    await db.prisma.request.update({ where: { id: oldId }, data: { createdAt: long } });
    const running = await db.prisma.request.create({ data: { userId: ids.userId, conversationId: ids.conversationId, status: "STREAMING", createdAt: long } });
    const runningNow = await db.prisma.request.create({ data: { userId: ids.userId, conversationId: ids.conversationId, status: "STREAMING" } });
    const oldMessages = await db.repos.messages.ofRequest(ids.userId, oldId);
    // Notes of deleted documents: one two days old goes, one from now stays.
    await db.repos.documents.noteErased(ids.userId, "old-doc.md", new Date(Date.now() - 2 * 86_400_000));
    await db.repos.documents.noteErased(ids.userId, "new-doc.md");

    const id = await queue.upkeepNow({ retentionDays: 30 });
    const { state, job } = await finished(id);
    assert.equal(state, "completed", job.failedReason);
    const r = job.returnvalue as UpkeepResult;
    assert.deepEqual(r.errors, []);
    assert.ok(r.duplicates >= 1, JSON.stringify(r));
    assert.ok(r.reembedded >= 1, JSON.stringify(r));
    assert.ok(r.requestsPruned >= 1, JSON.stringify(r));

    const rows = await db.repos.memories.all(ids.userId);
    assert.equal(rows.length, 1, "one of the two left");
    assert.ok(rows[0]!.collection, "and embedded");
    assert.equal(await db.prisma.request.count({ where: { id: oldId } }), 0, "the old finished request is gone");
    assert.equal(await db.prisma.request.count({ where: { id: { in: [recentId, running.id] } } }), 2, "a recent one and a running one stay");
    // In flight for over a day: left by a process that stopped mid-turn, it ends FAILED; one in flight now is left alone.
    assert.equal(r.staleRequestsFailed, 1, JSON.stringify(r));
    const stale = await db.repos.requests.get(ids.userId, running.id);
    assert.deepEqual([stale.status, stale.errorType, stale.error], ["FAILED", "INTERNAL", INTERRUPTED]);
    assert.equal((await db.repos.requests.get(ids.userId, runningNow.id)).status, "STREAMING");
    const kept = await db.prisma.message.findMany({ where: { id: { in: oldMessages.map((m) => m.id) } } });
    assert.equal(kept.length, oldMessages.length, "its messages stay");
    assert.ok(kept.every((m) => m.requestId === null));
    assert.equal(r.erasedNotesPruned, 1, JSON.stringify(r));
    assert.deepEqual((await db.prisma.erasedSource.findMany({ where: { userId: ids.userId } })).map((n) => n.source), ["new-doc.md"]);

    // PGlite has no autovacuum: upkeep vacuumed and analysed every table, the vector store's included.
    assert.equal(db.backend, "pglite");
    const tables = await db.sql.query<{ relname: string; vacuumed: boolean; analyzed: boolean }>(
      `SELECT relname, last_vacuum IS NOT NULL AS vacuumed, last_analyze IS NOT NULL AS analyzed FROM pg_stat_user_tables ORDER BY relname`,
    );
    assert.ok(tables.some((t) => t.relname === "conversations") && tables.some((t) => t.relname.startsWith("memory_")), JSON.stringify(tables));
    assert.equal(r.tablesVacuumed, tables.length, JSON.stringify(r));
    assert.deepEqual(tables.filter((t) => !t.vacuumed || !t.analyzed), [], "every table vacuumed and analysed");
    const [conv] = await db.sql.query<{ reltuples: number }>(`SELECT reltuples FROM pg_class WHERE relname = 'conversations'`);
    assert.ok(Number(conv!.reltuples) >= 1, "the planner's statistics were gathered");
  });
});
