// Two uploads of one source whose jobs run in two processes (in docker
// compose the gateway and the worker both run ingest workers): no in-process
// turn orders them. The steps of each job are run by hand, the way the
// document worker runs them (ingestDocument with the job's version and
// stillWanted, then documentTracker), with everything else real: PGlite with
// pgvector for the rows and the chunks, and jota-inference with the
// embedding test model. The older upload's job passes its stillWanted check,
// and its write reaches the store only after the newer upload's job has
// completed (as a slow link to the store would have it). What must hold:
// retrieval finds the newer version only, at every moment, and the older
// job's chunks do not stay behind.
import assert from "node:assert/strict";
import { openDatabase, type Database } from "../src/db/database";
import { InferenceEngineClient, openChannel } from "../src/engines/clients";
import type { EnginePool } from "../src/engines/pool";
import type { EngineProcess } from "../src/engines/process";
import { documentStillWanted, documentTracker } from "../src/jobs/documents";
import { ingestJobId } from "../src/jobs/queues";
import { uploadVersion } from "../src/jobs/worker";
import { silentLogger } from "../src/log";
import { ingestDocument, type IngestDocument, type IngestResult } from "../src/memory/ingest";
import { VectorRetriever } from "../src/memory/retrieve";
import { PgVectorStore, type StoredPoint, type VectorPoint, type VectorStore } from "../src/memory/vector";
import { allBySource } from "../src/memory/vector/store";
import { poolOf, startEmbedEngine } from "./helpers/jobs";
import { freshPgliteDir } from "./helpers/postgres-backends";

const COLOURS = ["red", "blue", "green", "yellow", "white", "black"];
/** `n` paragraphs, each naming its version, so that any chunk says which version it is of. */
const versionText = (v: string, n: number) =>
  Array.from(
    { length: n },
    (_, i) => `Paragraph ${i + 1} of version ${v}. The spare key of version ${v} is under pot number ${i + 1} on the balcony, next to the ${COLOURS[i]} chair.`,
  ).join("\n\n");

describe("jobs: an older upload's job that writes after the newer one's, in another process", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let client: InferenceEngineClient;
  let db: Database;
  let store: PgVectorStore;
  let retriever: VectorRetriever;

  before(async () => {
    const dir = await freshPgliteDir();
    [engine, db] = await Promise.all([startEmbedEngine(), openDatabase({ dataDir: dir, logger: silentLogger })]);
    store = await PgVectorStore.open({ dataDir: dir });
    pool = await poolOf([engine.address!]);
    const { options } = openChannel(engine.address!, { token: "", reconnectInitialMs: 100, reconnectMaxMs: 1000 });
    client = new InferenceEngineClient(engine.address!, options, 30_000);
    retriever = new VectorRetriever(store, pool, { memories: db.repos.memories, documents: db.repos.documents, topK: 50 });
  });
  after(async () => {
    await store?.close();
    await db?.close();
    client?.close();
    pool?.close();
    await engine?.stop();
  });

  interface Upload {
    doc: IngestDocument;
    jobId: string;
    /** As the worker makes it from the job (its id and creation time). */
    version: string;
  }

  /** An upload as the gateway makes it: the row naming the job first; its job created now. */
  let created = Date.now();
  async function upload(userId: string, source: string, text: string): Promise<Upload> {
    const doc: IngestDocument = { userId, source, text, mediaType: "text/plain" };
    const jobId = ingestJobId(doc);
    const row = await db.repos.documents.queue(userId, { source, mediaType: "text/plain", bytes: text.length, jobId });
    return { doc: { ...doc, documentId: row.id }, jobId, version: uploadVersion(jobId, ++created) };
  }

  const ids = (u: Upload) => ({ jobId: u.jobId, userId: u.doc.userId, source: u.doc.source, documentId: u.doc.documentId! });

  /** The job's ingestion, as the document worker runs it (jobs/worker.ts, jobs/documents.ts). */
  const ingest = (u: Upload, through: VectorStore) =>
    ingestDocument(u.doc, {
      engine: client,
      store: through,
      chunkTokens: 48,
      overlapTokens: 0,
      version: u.version,
      stillWanted: () => documentStillWanted(db.repos.documents)(ids(u)),
    });
  const settle = (u: Upload, result: IngestResult, through: VectorStore = store) =>
    documentTracker(db.repos.documents, through)({ ...ids(u), state: "completed", result });

  const stored = (collection: string, userId: string, source: string): Promise<StoredPoint[]> => allBySource(store, userId, collection, source, 100);
  const retrieved = async (userId: string, query: string) => (await retriever.retrieve(userId, query)).map((s) => s.text);

  it("the older job's write, landing after the newer job completed, is never retrieved and does not stay", async () => {
    const userId = (await db.repos.users.create({ username: "two-processes" })).id;
    const source = "keys.txt";
    const v1 = await upload(userId, source, versionText("one", 5));

    // Process A: the first upload's job, past its stillWanted check (the row names it), its write on the way.
    let land: (() => Promise<void>) | undefined;
    const slow: VectorStore = Object.create(store, {
      upsert: {
        value: async (collection: string, points: readonly VectorPoint[]) => {
          land = () => store.upsert(collection, points);
        },
      },
    });
    const r1 = await ingest(v1, slow);
    assert.ok(land, "the first job got as far as writing its chunks");

    // The user uploads the second version; process B runs its job to the end.
    const v2 = await upload(userId, source, versionText("two", 3));
    const r2 = await ingest(v2, store);
    await settle(v2, r2);
    const row = (await db.repos.documents.bySource(userId, source))!;
    assert.deepEqual([row.status, row.jobId, row.chunks], ["READY", v2.jobId, r2.chunks]);
    assert.ok(r1.chunks > r2.chunks, `the first version has more chunks (${r1.chunks} against ${r2.chunks})`);

    // Process A's write lands now: before its job settles, retrieval already takes none of it.
    await land!();
    const meanwhile = await retrieved(userId, "Where is the spare key of version one?");
    assert.ok(meanwhile.length > 0, "the document is found");
    assert.deepEqual(meanwhile.filter((t) => !t.includes("version two")), [], "only the second version is retrieved while the first job's chunks are in the store");

    // Process A's job settles: its chunks go.
    await settle(v1, r1);
    const left = await stored(r2.collection, userId, source);
    assert.equal(left.length, r2.chunks, "the second version's chunks, and nothing else");
    assert.deepEqual(left.filter((p) => !p.payload.text!.includes("version two")).map((p) => p.payload.text), [], "none of the first version");
    const after = await retrieved(userId, "Where is the spare key of version one?");
    assert.equal(after.length, r2.chunks, "every chunk of the second version is found");
    assert.ok(after.every((t) => t.includes("version two")), "only the second version is retrieved");
    assert.deepEqual((await db.repos.documents.bySource(userId, source))?.jobId, v2.jobId);
  });

  it("a new version, once READY, deletes the one before it, including chunks written before versions existed", async () => {
    const userId = (await db.repos.users.create({ username: "versions-in-turn" })).id;
    const source = "plan.txt";
    // A document READY from before versions: its chunks without a job in their ids, its row naming none.
    const v0 = await upload(userId, source, versionText("zero", 4));
    const r0 = await ingestDocument(v0.doc, { engine: client, store, chunkTokens: 48, overlapTokens: 0 });
    await db.repos.documents.ready(userId, source, v0.jobId, r0.chunks, r0.collection, v0.jobId);
    await db.prisma.document.updateMany({ where: { userId, source }, data: { chunksVersion: null } });
    assert.ok((await retrieved(userId, "spare key")).some((t) => t.includes("version zero")), "chunks without a version are found while the row names none");

    for (const [v, n] of [["one", 3], ["two", 2]] as const) {
      const u = await upload(userId, source, versionText(v, n));
      // Queued: until its job is READY, the version before it is what retrieval finds.
      const r = await ingest(u, store);
      assert.ok((await retrieved(userId, "spare key")).every((t) => !t.includes(`version ${v}`)), `version ${v} is not found before its row is READY`);
      await settle(u, r);
      const left = await stored(r.collection, userId, source);
      assert.equal(left.length, r.chunks, `only version ${v}'s chunks are left`);
      assert.ok(left.every((p) => p.payload.text!.includes(`version ${v}`)), `only version ${v}'s chunks are left`);
      const found = await retrieved(userId, "spare key");
      assert.equal(found.length, r.chunks);
      assert.ok(found.every((t) => t.includes(`version ${v}`)), `version ${v} is what retrieval finds`);
    }
  });

  it("a cleanup that fails after READY does not fail the job, and the next READY takes what it left", async () => {
    const userId = (await db.repos.users.create({ username: "failed-cleanup" })).id;
    const source = "boiler.txt";
    const v1 = await upload(userId, source, versionText("one", 4));
    await settle(v1, await ingest(v1, store));
    // The store fails to delete just when the second version's job cleans up.
    const failing: VectorStore = Object.create(store, {
      deletePoints: { value: async () => Promise.reject(new Error("the store went away")) },
    });
    const v2 = await upload(userId, source, versionText("two", 3));
    const r2 = await ingest(v2, store);
    await assert.doesNotReject(settle(v2, r2, failing), "the job whose chunks are current does not fail");
    const row = (await db.repos.documents.bySource(userId, source))!;
    assert.deepEqual([row.status, row.chunksVersion], ["READY", v2.version]);
    assert.ok((await stored(r2.collection, userId, source)).some((p) => p.payload.text!.includes("version one")), "version one is left in the store");
    const found = await retrieved(userId, "spare key");
    assert.equal(found.length, r2.chunks);
    assert.ok(found.every((t) => t.includes("version two")), "only version two is retrieved");

    // The next version's cleanup takes both older ones.
    const v3 = await upload(userId, source, versionText("three", 2));
    const r3 = await ingest(v3, store);
    await settle(v3, r3);
    const left = await stored(r3.collection, userId, source);
    assert.equal(left.length, r3.chunks, "only version three's chunks are left");
    assert.ok(left.every((p) => p.payload.text!.includes("version three")), "only version three's chunks are left");
  });

  it("uploading earlier content again is a new version, which the cleanup of the version between cannot delete", async () => {
    const userId = (await db.repos.users.create({ username: "revert" })).id;
    const source = "recipe.txt";
    const textA = versionText("A", 3);
    const a1 = await upload(userId, source, textA);
    await settle(a1, await ingest(a1, store));

    // B replaces A; its cleanup has listed A's chunks, and its delete is slow to reach the store.
    let deleteLate: (() => Promise<number>) | undefined;
    let listed!: () => void;
    const listedNow = new Promise<void>((r) => (listed = r));
    const slow: VectorStore = Object.create(store, {
      deletePoints: {
        value: (u: string, c: string, pointIds: readonly string[]) =>
          new Promise<number>((resolve, reject) => {
            deleteLate = () => store.deletePoints(u, c, pointIds).then((n) => (resolve(n), n), (e) => (reject(e), 0));
            listed();
          }),
      },
    });
    const b = await upload(userId, source, versionText("B", 2));
    const rb = await ingest(b, store);
    const settledB = settle(b, rb, slow);
    await listedNow;

    // The user goes back to A: the same content, so the same job id, added again (a new job).
    const a2 = await upload(userId, source, textA);
    assert.equal(a2.jobId, a1.jobId, "the same content makes the same job id");
    const ra2 = await ingest(a2, store);
    await settle(a2, ra2);
    // B's delete of the first A's chunks lands now.
    await deleteLate!();
    await settledB;

    const row = (await db.repos.documents.bySource(userId, source))!;
    assert.deepEqual([row.status, row.chunksVersion], ["READY", a2.version]);
    const left = await stored(ra2.collection, userId, source);
    assert.equal(left.length, ra2.chunks, "every chunk of A, uploaded again, is still stored");
    assert.ok(left.every((p) => p.payload.text!.includes("version A")));
    const found = await retrieved(userId, "spare key");
    assert.equal(found.length, ra2.chunks, "and found");
  });
});
