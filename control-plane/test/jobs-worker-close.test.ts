// Closing a worker in the middle of an ingestion (a deploy, Ctrl-C) aborts
// it, puts the job back in the queue without using up one of its attempts,
// and leaves the store as it was; the next worker ingests the document whole.
import assert from "node:assert/strict";
import type { EngineProcess } from "../src/engines/process";
import type { EnginePool } from "../src/engines/pool";
import type { RedisHandle } from "../src/jobs/redis";
import { IngestQueue } from "../src/jobs/queues";
import { startIngestWorker, type IngestWorker } from "../src/jobs/worker";
import { silentLogger } from "../src/log";
import type { PgVectorStore } from "../src/memory/vector";
import { openStore, poolOf, smallMarkdown, startEmbedEngine, startRedis, waitForJob } from "./helpers/jobs";

describe("jobs: closing a worker mid-ingestion", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let store: PgVectorStore;
  let redis: RedisHandle;
  let queue: IngestQueue;
  let worker: IngestWorker | undefined;
  const ingest = { chunkTokens: 32, overlapTokens: 8 };

  before(async () => {
    [engine, store, redis] = await Promise.all([startEmbedEngine(), openStore(), startRedis()]);
    pool = await poolOf([engine.address!]);
    queue = new IngestQueue({ connection: redis.connection, backoffMs: 5 });
  });
  after(async () => {
    await worker?.close();
    await queue?.close();
    await redis?.close();
    pool?.close();
    await store?.close();
    await engine?.stop();
  });

  it("aborts the running job, queues it again with its attempts intact, and the next worker completes it", async () => {
    const text = smallMarkdown(120, "Long"); // about 35 KB: hundreds of Tokenize calls, dozens of Embed calls
    const first = startIngestWorker({ connection: redis.connection, pool, store, logger: silentLogger, ingest, progressIntervalMs: 0 });
    const { jobId } = await queue.submitIngest({ userId: "alice", source: "long.md", text });
    const running = await waitForJob(queue, "alice", jobId, ["active"], 30_000);
    // Wait for it to be well under way.
    for (let s = running; !s.progress; s = (await queue.getJob("alice", jobId))!) await new Promise((r) => setTimeout(r, 10));

    const t0 = Date.now();
    await first.close();
    const closeMs = Date.now() - t0;
    const requeued = await queue.getJob("alice", jobId);
    assert.equal(requeued?.state, "waiting", JSON.stringify(requeued));
    assert.equal(requeued?.attemptsMade, 0, "the aborted attempt is not counted");
    assert.ok(closeMs < 5000, `close() took ${closeMs} ms: the ingestion was aborted, not waited for`);
    for (const c of await collections()) assert.equal(await store.count(c, { userId: "alice", source: "long.md" }), 0, "nothing was stored");

    worker = startIngestWorker({ connection: redis.connection, pool, store, logger: silentLogger, ingest });
    const done = await waitForJob(queue, "alice", jobId, ["completed", "failed"], 100_000);
    assert.equal(done.state, "completed", done.failedReason);
    assert.equal(done.attemptsMade, 1);
    assert.equal(await store.count(done.result!.collection, { userId: "alice", source: "long.md" }), done.result!.chunks);
  });

  async function collections(): Promise<string[]> {
    const info = (await pool.inference[0]!.client.info()).embeddingModel!;
    return [(await store.ensureCollection(info.name, info.embeddingSize)).name];
  }
});
