// Two uploads of one source whose jobs overlap, all real: a private
// redis-server, BullMQ, a jota-inference with the embedding test model,
// PGlite with pgvector holding both the document rows and the chunks, and
// the document worker every Jota process runs (jobs/documents.ts). The only
// thing added is a gate in front of the store's upsert, which holds the first
// job inside its store phase (past its stillWanted check) while the test
// re-uploads (as a slow store would). What must hold: the newer version's chunks are what stays, and a
// deleted document leaves no chunk behind.
import assert from "node:assert/strict";
import { openDatabase, type Database } from "../src/db/database";
import type { EnginePool } from "../src/engines/pool";
import type { EngineProcess } from "../src/engines/process";
import { startDocumentWorker } from "../src/jobs/documents";
import { IngestQueue, ingestJobId } from "../src/jobs/queues";
import type { RedisHandle } from "../src/jobs/redis";
import type { IngestWorker } from "../src/jobs/worker";
import { silentLogger } from "../src/log";
import { embedTexts } from "../src/memory/embedder";
import { PgVectorStore, type VectorPoint, type VectorStore } from "../src/memory/vector";
import { UnknownCollectionError, UnknownDocumentError } from "../src/memory/vector/store";
import { poolOf, smallMarkdown, startEmbedEngine, startRedis, waitForJob } from "./helpers/jobs";
import { freshPgliteDir } from "./helpers/postgres-backends";

describe("jobs: overlapping ingests of one source", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let db: Database;
  let store: PgVectorStore;
  let redis: RedisHandle;
  const ingest = { chunkTokens: 48, overlapTokens: 8 };

  before(async () => {
    const dir = await freshPgliteDir();
    [engine, redis, db] = await Promise.all([startEmbedEngine(), startRedis(), openDatabase({ dataDir: dir, logger: silentLogger })]);
    store = await PgVectorStore.open({ dataDir: dir });
    pool = await poolOf([engine.address!]);
  });
  after(async () => {
    await redis?.close();
    await store?.close();
    await db?.close();
    pool?.close();
    await engine?.stop();
  });

  /** The store, whose first upsert of `source`'s chunks waits until open() (it says when it got there). */
  function gated(source: string) {
    let reached!: () => void;
    const there = new Promise<void>((r) => (reached = r));
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    let first = true;
    const s: VectorStore = Object.create(store, {
      upsert: {
        value: async (collection: string, points: readonly VectorPoint[]) => {
          if (first && points.some((p) => p.payload.source === source)) {
            first = false;
            reached();
            await opened;
          }
          return store.upsert(collection, points);
        },
      },
    });
    return { store: s, there, open };
  }

  /** An upload as the gateway makes it: the row naming the job first, then the job. */
  async function upload(queue: IngestQueue, userId: string, source: string, text: string) {
    const doc = { userId, source, text, mediaType: "text/markdown" };
    const row = await db.repos.documents.queue(userId, { source, mediaType: doc.mediaType, bytes: text.length, jobId: ingestJobId(doc) });
    const { jobId } = await queue.submitIngest({ ...doc, documentId: row.id });
    return jobId;
  }

  async function setUp(name: string, through: VectorStore, concurrency: number) {
    const queue = new IngestQueue({ connection: redis.connection, name, backoffMs: 5 });
    const worker = startDocumentWorker(db.repos.documents, { connection: redis.connection, pool, store: through, logger: silentLogger, ingest, queueName: name, concurrency, progressIntervalMs: 0 });
    return { queue, worker };
  }
  async function tearDown(t: { queue: IngestQueue; worker: IngestWorker }) {
    await t.worker.close();
    await t.queue.close();
  }

  const texts = async (collection: string, userId: string, source: string) => {
    const probe = (await embedTexts(pool, ["probe"])).vectors[0]!;
    const n = await store.count(collection, { userId, source });
    return n === 0 ? [] : (await store.query(collection, probe, { topK: n, filter: { userId, source } })).map((p) => p.payload.text!);
  };

  it("a re-upload while the first job stores: the newer version is what stays", async () => {
    const userId = (await db.repos.users.create({ username: "overlap" })).id;
    const gate = gated("plan.md");
    const t = await setUp("jota-ingest-overlap", gate.store, 2);
    try {
      const v1 = await upload(t.queue, userId, "plan.md", smallMarkdown(4, "Version one"));
      await gate.there; // the first job is in its store phase
      const v2 = await upload(t.queue, userId, "plan.md", smallMarkdown(2, "Version two"));
      // The second job runs beside it (two at once). Left to itself it would be done within moments
      // of embedding its chunks: it is given that time, then the first job goes on.
      const deadline = Date.now() + 60_000;
      let embeddedAt: number | undefined;
      for (;;) {
        const s = await t.queue.getJob(userId, v2);
        if (s?.state === "completed" || s?.state === "failed") break;
        if (s?.progress?.phase === "embed" && s.progress.done === s.progress.total) embeddedAt ??= Date.now();
        if (embeddedAt !== undefined && Date.now() - embeddedAt > 1500) break;
        if (Date.now() > deadline) throw new Error(`the second job never got to its store phase: ${JSON.stringify(s)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      gate.open();
      const [one, two] = [await waitForJob(t.queue, userId, v1), await waitForJob(t.queue, userId, v2)];
      assert.equal(two.state, "completed", two.failedReason);
      const row = (await db.repos.documents.bySource(userId, "plan.md"))!;
      assert.deepEqual([row.status, row.jobId, row.chunks], ["READY", v2, two.result!.chunks]);
      const stored = await texts(two.result!.collection, userId, "plan.md");
      assert.equal(stored.length, two.result!.chunks, `only the second version's chunks (the first job ${one.state})`);
      assert.ok(stored.every((x) => !x.includes("Version one")), "none of the first version");
    } finally {
      gate.open();
      await tearDown(t);
    }
  });

  it("a re-upload while the first job stores, then a delete before the second job runs: no chunk is left", async () => {
    const userId = (await db.repos.users.create({ username: "orphan" })).id;
    const gate = gated("draft.md");
    const t = await setUp("jota-ingest-orphan", gate.store, 1);
    try {
      const v1 = await upload(t.queue, userId, "draft.md", smallMarkdown(3, "Draft one"));
      await gate.there;
      // The second job waits (the queue is paused: no worker takes it) while the first one ends.
      await t.queue.queue.pause();
      await upload(t.queue, userId, "draft.md", smallMarkdown(2, "Draft two"));
      gate.open();
      const one = await waitForJob(t.queue, userId, v1);
      assert.equal(one.state, "completed", one.failedReason);

      // The user deletes the document, as the gateway's DELETE does: the chunks where the row says, then the row,
      // then the job it names when no newer upload has it.
      const d = (await db.repos.documents.bySource(userId, "draft.md"))!;
      if (d.collection)
        await store.deleteBySource(userId, d.collection, d.source).catch((err: unknown) => {
          if (!(err instanceof UnknownDocumentError || err instanceof UnknownCollectionError)) throw err;
        });
      await db.repos.documents.delete(userId, d.id);
      await t.queue.queue.remove(d.jobId!);
      await t.queue.queue.resume();

      assert.equal(await store.count(one.result!.collection, { userId, source: "draft.md" }), 0, "the first version's chunks went with the document");
    } finally {
      gate.open();
      await t.queue.queue.resume().catch(() => {});
      await tearDown(t);
    }
  });
});
