// Queued jobs survive a Redis crash: with no worker running, two documents
// are submitted, the private redis-server is killed (SIGKILL, as a crash) and
// started again on the same folder and port, from its append-only file; a
// worker started afterwards finds both jobs and completes them.
import assert from "node:assert/strict";
import type { EngineProcess } from "../src/engines/process";
import type { EnginePool } from "../src/engines/pool";
import type { RedisHandle } from "../src/jobs/redis";
import { IngestQueue } from "../src/jobs/queues";
import { startIngestWorker, type IngestWorker } from "../src/jobs/worker";
import { silentLogger } from "../src/log";
import type { PgVectorStore } from "../src/memory/vector";
import { processGone } from "./helpers/engines";
import { openStore, poolOf, smallMarkdown, startEmbedEngine, startRedis, waitForJob } from "./helpers/jobs";

describe("jobs: queued jobs survive a Redis crash", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let store: PgVectorStore;
  let redis: RedisHandle;
  let queue: IngestQueue;
  let worker: IngestWorker | undefined;

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

  it("two jobs submitted before a SIGKILL of redis-server complete after its restart", async () => {
    const docs = [
      { userId: "alice", source: "a.md", text: smallMarkdown(3, "First") },
      { userId: "bob", source: "b.md", text: smallMarkdown(4, "Second") },
    ];
    const jobs = [];
    for (const d of docs) jobs.push((await queue.submitIngest(d)).jobId);
    assert.equal((await queue.getJob("alice", jobs[0]!))?.state, "waiting");

    const { pid: before, port } = redis.server!;
    await redis.restart("SIGKILL");
    assert.ok(processGone(before!), "the first server is gone");
    assert.notEqual(redis.server!.pid, before);
    assert.equal(redis.server!.port, port);

    // Still there after the crash, still waiting, nothing run yet.
    for (const [i, d] of docs.entries()) {
      const s = await queue.getJob(d.userId, jobs[i]!);
      assert.equal(s?.state, "waiting", `job ${i} after the restart: ${JSON.stringify(s)}`);
      assert.equal(s?.attemptsMade, 0);
    }

    worker = startIngestWorker({ connection: redis.connection, pool, store, logger: silentLogger, ingest: { chunkTokens: 48, overlapTokens: 8 } });
    for (const [i, d] of docs.entries()) {
      const done = await waitForJob(queue, d.userId, jobs[i]!);
      assert.equal(done.state, "completed", done.failedReason);
      assert.equal(done.attemptsMade, 1);
      assert.equal(await store.count(done.result!.collection, { userId: d.userId, source: d.source }), done.result!.chunks);
    }
  });
});
