// Ingest jobs end to end, all real: a private redis-server, BullMQ, a
// jota-inference with the embedding test model behind the engine pool, and
// pgvector on embedded PGlite. A document submitted as a job is chunked,
// embedded and stored, with its progress visible; the same document submitted
// again is the same job; bad input fails at once with its reason; engine or
// store trouble is retried with backoff; a user sees only their own jobs;
// onSettled hears each final outcome once.
import assert from "node:assert/strict";
import { QueueEvents } from "bullmq";
import type { EngineProcess } from "../src/engines/process";
import type { EnginePool } from "../src/engines/pool";
import type { RedisHandle } from "../src/jobs/redis";
import { IngestQueue } from "../src/jobs/queues";
import { startIngestWorker, type IngestOutcome, type IngestWorker } from "../src/jobs/worker";
import { silentLogger } from "../src/log";
import type { IngestProgress } from "../src/memory/ingest";
import type { PgVectorStore, VectorStore } from "../src/memory/vector";
import { openStore, poolOf, smallMarkdown, startEmbedEngine, startRedis, waitForJob } from "./helpers/jobs";

describe("jobs: ingest documents through the queue", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let store: PgVectorStore;
  let redis: RedisHandle;
  let queue: IngestQueue;
  let worker: IngestWorker;
  let events: QueueEvents;
  let eventsConnection: RedisHandle["connection"];
  const progress = new Map<string, IngestProgress[]>();
  /** Every onSettled call, by job id. */
  const settled = new Map<string, IngestOutcome[]>();
  const onSettled = (o: IngestOutcome) => void settled.set(o.jobId, [...(settled.get(o.jobId) ?? []), o]);
  const ingest = { chunkTokens: 48, overlapTokens: 8 };

  before(async () => {
    [engine, store, redis] = await Promise.all([startEmbedEngine(), openStore(), startRedis()]);
    pool = await poolOf([engine.address!]);
    queue = new IngestQueue({ connection: redis.connection, backoffMs: 5 });
    eventsConnection = redis.connection.duplicate();
    events = new QueueEvents(queue.name, { connection: eventsConnection });
    events.on("progress", ({ jobId, data }) => {
      if (!progress.has(jobId)) progress.set(jobId, []);
      progress.get(jobId)!.push(data as unknown as IngestProgress);
    });
    await events.waitUntilReady();
    worker = startIngestWorker({ connection: redis.connection, pool, store, logger: silentLogger, ingest, progressIntervalMs: 0, onSettled });
  });
  after(async () => {
    await worker?.close();
    await events?.close();
    eventsConnection?.disconnect();
    await queue?.close();
    await redis?.close();
    pool?.close();
    await store?.close();
    await engine?.stop();
  });

  it("a Markdown document: the job completes, its progress is reported, its chunks are in the store", async () => {
    const text = smallMarkdown(8);
    const { jobId, state } = await queue.submitIngest({ userId: "alice", source: "notes.md", text, title: "Notes", tags: ["home"] });
    assert.match(jobId, /^ingest:alice:[0-9a-f]{32}$/);
    assert.ok(["waiting", "active"].includes(state), state);

    const done = await waitForJob(queue, "alice", jobId);
    assert.equal(done.state, "completed", done.failedReason);
    assert.equal(done.attemptsMade, 1);
    assert.equal(done.source, "notes.md");
    const res = done.result!;
    assert.ok(res.chunks >= 4, `a document of 8 sections makes several ${ingest.chunkTokens}-token chunks (${res.chunks})`);
    assert.equal(res.replaced, 0);
    assert.deepEqual(done.progress, { phase: "store", done: res.chunks, total: res.chunks });
    assert.equal(await store.count(res.collection, { userId: "alice", source: "notes.md" }), res.chunks);

    // The events a client would stream: every phase, in order, each ending with done == total.
    const seen = progress.get(jobId) ?? [];
    const phases = [...new Set(seen.map((p) => p.phase))];
    assert.deepEqual(phases, ["tokenize", "embed", "store"]);
    for (const phase of phases) {
      const last = seen.filter((p) => p.phase === phase).at(-1)!;
      assert.equal(last.done, last.total, `${phase} ends with done == total (${JSON.stringify(last)})`);
    }
    assert.deepEqual(seen.filter((p) => p.phase === "embed").at(-1), { phase: "embed", done: res.chunks, total: res.chunks });
    assert.deepEqual(settled.get(jobId), [{ jobId, userId: "alice", source: "notes.md", state: "completed", result: res }]);
  });

  it("the same document submitted again is the same job: nothing is ingested twice", async () => {
    const text = smallMarkdown(3, "Twice");
    const first = await queue.submitIngest({ userId: "alice", source: "twice.md", text });
    const done = await waitForJob(queue, "alice", first.jobId);
    assert.equal(done.state, "completed");
    const count = await store.count(done.result!.collection, { userId: "alice", source: "twice.md" });
    assert.equal(count, done.result!.chunks);

    const again = await queue.submitIngest({ userId: "alice", source: "twice.md", text });
    assert.deepEqual(again, { jobId: first.jobId, state: "completed" });
    // And at once, many times over: still one job.
    const many = await Promise.all(Array.from({ length: 5 }, () => queue.submitIngest({ userId: "alice", source: "twice.md", text })));
    assert.ok(many.every((m) => m.jobId === first.jobId));
    await new Promise((r) => setTimeout(r, 200)); // a duplicate would have started by now
    const after = await queue.getJob("alice", first.jobId);
    assert.equal(after?.state, "completed");
    assert.equal(after?.attemptsMade, 1, "not run again");
    assert.deepEqual(after?.finishedAt, done.finishedAt);
    assert.equal(await store.count(done.result!.collection, { userId: "alice", source: "twice.md" }), count);
    assert.equal(await queue.queue.getJobCountByTypes("waiting", "active", "delayed"), 0);

    // A new version of the source is a new job, which replaces the old chunks.
    const v2 = await queue.submitIngest({ userId: "alice", source: "twice.md", text: smallMarkdown(1, "Twice, shorter") });
    assert.notEqual(v2.jobId, first.jobId);
    const done2 = await waitForJob(queue, "alice", v2.jobId);
    assert.equal(done2.state, "completed");
    assert.equal(done2.result!.replaced, count);
    assert.equal(await store.count(done2.result!.collection, { userId: "alice", source: "twice.md" }), done2.result!.chunks);
  });

  it("a document the ingester refuses fails at once, without retries, with the reason", async () => {
    const { jobId } = await queue.submitIngest({ userId: "alice", source: "empty.md", text: "  \n\n  " });
    const failed = await waitForJob(queue, "alice", jobId);
    assert.equal(failed.state, "failed");
    assert.equal(failed.attemptsMade, 1);
    assert.match(failed.failedReason ?? "", /ingest of "empty.md": the document has no text/);
    assert.equal(failed.result, undefined);
    assert.deepEqual(settled.get(jobId), [{ jobId, userId: "alice", source: "empty.md", state: "failed", reason: failed.failedReason }]);

    const bad = await queue.submitIngest({ userId: "alice", source: "tags.md", text: "Some text.", tags: [""] });
    const failedTags = await waitForJob(queue, "alice", bad.jobId);
    assert.equal(failedTags.state, "failed");
    assert.equal(failedTags.attemptsMade, 1);
    assert.match(failedTags.failedReason ?? "", /document.tags must be an array of non-empty strings/);
  });

  it("a finished job submitted again with another payload runs with that payload, under the same id", async () => {
    const text = "The garden shed key hangs behind the kitchen door.";
    const first = await queue.submitIngest({ userId: "alice", source: "shed.txt", text, mediaType: "application/x-unknown" });
    const failed = await waitForJob(queue, "alice", first.jobId);
    assert.equal(failed.state, "failed");
    assert.match(failed.failedReason ?? "", /mediaType "application\/x-unknown" is not one of/);

    // The same content again, now with a media type that can be read: this submission is what runs.
    const fixed = await queue.submitIngest({ userId: "alice", source: "shed.txt", text, mediaType: "text/plain" });
    assert.equal(fixed.jobId, first.jobId);
    const done = await waitForJob(queue, "alice", first.jobId);
    assert.equal(done.state, "completed", done.failedReason);
    assert.equal(done.attemptsMade, 1, "from its first attempt");
    const collection = done.result!.collection;
    assert.equal(await store.count(collection, { userId: "alice", source: "shed.txt" }), done.result!.chunks);

    // Completed, then submitted with tags: it runs again, and the chunks carry them.
    const tagged = { userId: "alice", source: "shed.txt", text, mediaType: "text/plain", tags: ["garden"] };
    assert.equal((await queue.submitIngest(tagged)).jobId, first.jobId);
    const retagged = await waitForJob(queue, "alice", first.jobId);
    assert.equal(retagged.state, "completed", retagged.failedReason);
    assert.ok(retagged.finishedAt! > done.finishedAt!, "it ran again");
    assert.equal(await store.count(collection, { userId: "alice", source: "shed.txt", tags: ["garden"] }), retagged.result!.chunks);
    assert.equal(await store.count(collection, { userId: "alice", source: "shed.txt" }), retagged.result!.chunks, "replacing the untagged chunks");

    // The very same submission once more is that completed job.
    assert.deepEqual(await queue.submitIngest(tagged), { jobId: first.jobId, state: "completed" });
    await new Promise((r) => setTimeout(r, 200)); // a rerun would have started by now
    assert.deepEqual((await queue.getJob("alice", first.jobId))?.finishedAt, retagged.finishedAt);
  });

  it("another user's job is not found, and the same text from another user is another job", async () => {
    const text = smallMarkdown(2, "Private");
    const { jobId } = await queue.submitIngest({ userId: "alice", source: "private.md", text });
    await waitForJob(queue, "alice", jobId);
    assert.equal(await queue.getJob("bob", jobId), undefined);
    assert.equal(await queue.getJob("bob", jobId.replace("ingest:alice:", "ingest:bob:")), undefined);
    assert.equal(await queue.getJob("alice", "ingest:alice:0123456789abcdef0123456789abcdef"), undefined);
    assert.equal(await queue.getJob("alice", "not-a-job"), undefined);

    const bobs = await queue.submitIngest({ userId: "bob", source: "private.md", text });
    assert.notEqual(bobs.jobId, jobId);
    const done = await waitForJob(queue, "bob", bobs.jobId);
    assert.equal(done.state, "completed");
    assert.equal(await store.count(done.result!.collection, { userId: "bob", source: "private.md" }), done.result!.chunks);
    assert.equal(await queue.getJob("alice", bobs.jobId), undefined);
  });

  it("a store failure is retried with backoff, and the job completes", async () => {
    // The real store, whose first write fails as a lost database connection would.
    let upserts = 0;
    const flaky: VectorStore = Object.create(store, {
      upsert: {
        value: async (...args: Parameters<VectorStore["upsert"]>) => {
          if (upserts++ === 0) throw new Error("connection to the database lost");
          return store.upsert(...args);
        },
      },
    });
    const q = new IngestQueue({ connection: redis.connection, name: "jota-ingest-flaky", backoffMs: 5 });
    const w = startIngestWorker({ connection: redis.connection, pool, store: flaky, logger: silentLogger, ingest, queueName: q.name, onSettled });
    try {
      const { jobId } = await q.submitIngest({ userId: "alice", source: "flaky.md", text: smallMarkdown(2, "Flaky") });
      const done = await waitForJob(q, "alice", jobId);
      assert.equal(done.state, "completed", done.failedReason);
      assert.equal(done.attemptsMade, 2);
      assert.equal(upserts, 2);
      assert.deepEqual(settled.get(jobId)?.map((o) => o.state), ["completed"], "the failed attempt was not final");
      assert.equal(await store.count(done.result!.collection, { userId: "alice", source: "flaky.md" }), done.result!.chunks);
    } finally {
      await w.close();
      await q.close();
    }
  });

  it("with no engine to embed, every attempt fails and the last one's error is the job's", async () => {
    const nowhere = await poolOf(["127.0.0.1:1"], false); // nothing listens there
    const q = new IngestQueue({ connection: redis.connection, name: "jota-ingest-noengine", backoffMs: 5 });
    const w = startIngestWorker({ connection: redis.connection, pool: nowhere, store, logger: silentLogger, ingest, queueName: q.name, onSettled });
    try {
      const t0 = Date.now();
      const { jobId } = await q.submitIngest({ userId: "alice", source: "lost.md", text: "Nobody will embed this." });
      const failed = await waitForJob(q, "alice", jobId);
      assert.equal(failed.state, "failed");
      assert.equal(failed.attemptsMade, 3);
      assert.match(failed.failedReason ?? "", /no healthy inference engine: 127\.0\.0\.1:1/);
      assert.ok(Date.now() - t0 >= 5 + 10, "the retries waited for their backoff (5 ms, then 10 ms)");
      assert.deepEqual(settled.get(jobId), [{ jobId, userId: "alice", source: "lost.md", state: "failed", reason: failed.failedReason }], "settled once, after the last attempt");

      // Submitted again, the failed job is tried again, from its first attempt.
      const again = await q.submitIngest({ userId: "alice", source: "lost.md", text: "Nobody will embed this." });
      assert.equal(again.jobId, jobId);
      assert.notEqual(again.state, "failed");
      const failedAgain = await waitForJob(q, "alice", jobId);
      assert.equal(failedAgain.state, "failed");
      assert.equal(failedAgain.attemptsMade, 3);
      assert.ok(failedAgain.finishedAt! > failed.finishedAt!);
    } finally {
      await w.close();
      await q.close();
      nowhere.close();
    }
  });
});
