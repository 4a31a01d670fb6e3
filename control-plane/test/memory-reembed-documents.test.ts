// Upkeep's re-embedding of documents after an embedding model change, with
// real parts: PGlite with pgvector, a jota-inference serving tiny-embed.gguf
// (the current model) and a document ingested by it. Only one embedding
// model ships for the tests, so the "old model" is the retired-model
// collection the memories' test uses too: the document's real chunks and
// payloads, moved there with vectors of its own, and the row naming it, as a
// document ingested before the change is. What is checked is the promise to
// the user: after upkeep, retrieval (which queries the current model's
// collection) finds the document's text again, the old collection holds
// none of it, and an upkeep stopped between its steps is finished by the next.
import assert from "node:assert/strict";
import { openDatabase, type Database } from "../src/db/database";
import { InferenceEngineClient, openChannel } from "../src/engines/clients";
import type { EnginePool } from "../src/engines/pool";
import type { EngineProcess } from "../src/engines/process";
import { silentLogger } from "../src/log";
import { embedTexts } from "../src/memory/embedder";
import { ingestDocument } from "../src/memory/ingest";
import { Memories } from "../src/memory/memories";
import { reembedDocuments } from "../src/memory/reembed-documents";
import { VectorRetriever } from "../src/memory/retrieve";
import { runUpkeep } from "../src/memory/upkeep";
import { PgVectorStore } from "../src/memory/vector";
import { allBySource, chunkPointId, type StoredPoint } from "../src/memory/vector/store";
import { poolOf, startEmbedEngine } from "./helpers/jobs";
import { freshPgliteDir } from "./helpers/postgres-backends";

const TEXT = [
  "# Boiler manual",
  "The boiler's reset button is behind the grey panel, on the left side.",
  "Hold it for five seconds until the green light blinks twice.",
  "The yearly service is due every October; call Calefacciones Ruiz at extension 4471.",
  "The pressure gauge should read between one and one and a half bar when the water is cold.",
].join("\n\n");

describe("memory upkeep: documents re-embedded after an embedding model change", function () {
  this.timeout(180_000);
  let engine: EngineProcess;
  let client: InferenceEngineClient;
  let pool: EnginePool;
  let db: Database;
  let store: PgVectorStore;
  let memories: Memories;
  let retriever: VectorRetriever;
  let current: string;
  let dim: number;

  before(async () => {
    engine = await startEmbedEngine();
    pool = await poolOf([engine.address!]);
    const { options } = openChannel(engine.address!, { token: "", reconnectInitialMs: 100, reconnectMaxMs: 1000 });
    client = new InferenceEngineClient(engine.address!, options, 30_000);
    const dir = await freshPgliteDir();
    db = await openDatabase({ dataDir: dir, logger: silentLogger });
    store = await PgVectorStore.open({ dataDir: dir });
    memories = new Memories(db.repos, store, pool);
    retriever = new VectorRetriever(store, pool, { memories: db.repos.memories, documents: db.repos.documents, topK: 10 });
    const probe = await embedTexts(pool, ["probe"]);
    current = probe.collection;
    dim = probe.dimensions;
  });
  after(async () => {
    await store?.close();
    await db?.close();
    client?.close();
    pool?.close();
    await engine?.stop();
  });

  // Pages of 2: the chunks span several.
  const all = async (collection: string, userId: string, source: string): Promise<StoredPoint[]> =>
    (await allBySource(store, userId, collection, source, 2)).sort((a, b) => a.payload.chunk! - b.payload.chunk!);

  /**
   * A READY document of a new user whose chunks (ingested for real) are in the retired model's collection,
   * as before a model change; with `copyInCurrent`, its chunks are in the current collection too.
   */
  async function documentOfOldModel(name: string, copyInCurrent = false) {
    const u = (await db.repos.users.create({ username: name })).id;
    const source = `manual-${name}.md`;
    const row = await db.repos.documents.queue(u, { source, title: "Boiler manual", mediaType: "text/markdown", bytes: TEXT.length, jobId: `job-${name}` });
    const res = await ingestDocument({ userId: u, source, text: TEXT, title: "Boiler manual", documentId: row.id }, { engine: client, store, chunkTokens: 24, overlapTokens: 0, version: `job-${name}` });
    assert.equal(res.collection, current);
    assert.ok(res.chunks >= 3, `several chunks (${res.chunks})`);
    const chunks = await all(current, u, source);
    assert.equal(chunks.length, res.chunks);
    const old = await store.ensureCollection("retired-model", dim);
    await store.upsert(
      old.name,
      chunks.map((p, i) => ({ id: p.id, vector: Array.from({ length: dim }, (_, j) => Math.sin(i * 31 + j + 1)), payload: p.payload })),
    );
    if (!copyInCurrent) await store.deleteBySource(u, current, source);
    assert.ok(await db.repos.documents.ready(u, source, `job-${name}`, res.chunks, old.name, `job-${name}`));
    return { u, source, chunks, old: old.name };
  }

  const found = async (u: string, source: string, text: string) => (await retriever.retrieve(u, text)).filter((s) => s.source === source);

  it("upkeep embeds the chunks again from their text: retrieval finds them in the current collection, the old one holds none", async () => {
    const { u, source, chunks, old } = await documentOfOldModel("ana");
    const target = chunks[1]!;
    assert.deepEqual(await found(u, source, target.payload.text!), [], "before upkeep the document cannot be retrieved");

    const r = await runUpkeep({ repos: db.repos, memories, logger: silentLogger }, { retentionDays: 0 });
    assert.deepEqual(r.errors, []);
    const hits = await found(u, source, target.payload.text!);
    assert.equal(hits[0]?.id, target.id, "its own text finds the chunk first");
    assert.equal(hits[0]?.text, target.payload.text);
    assert.equal(hits[0]?.title, "Boiler manual");
    assert.ok(hits[0]!.score > 0.999, `a vector of the current model (${hits[0]!.score})`);
    assert.equal(r.documentsReembedded, 1, JSON.stringify(r));

    const row = await db.repos.documents.bySource(u, source);
    assert.equal(row?.collection, current, "the row names the current collection");
    assert.equal(row?.status, "READY");
    assert.equal(await store.count(old, { userId: u }), 0, "none of its points are left in the old collection");
    assert.deepEqual(await all(current, u, source), chunks, "the same ids and payloads");

    const again = await runUpkeep({ repos: db.repos, memories, logger: silentLogger }, { retentionDays: 0 });
    assert.equal(again.documentsReembedded, 0, "nothing left to do");
    assert.equal(await store.count(current, { userId: u, source }), chunks.length);
  });

  it("an upkeep stopped after writing the new chunks, or after deleting the old ones, is finished by the next", async () => {
    // Stopped after step 1: the chunks in both collections, the row naming the old one.
    const a = await documentOfOldModel("ben", true);
    // Stopped after step 2: the chunks only in the current collection, the row still naming the old one.
    const b = await documentOfOldModel("cai", true);
    await store.deleteBySource(b.u, b.old, b.source);

    assert.equal(await reembedDocuments({ documents: db.repos.documents, store, embed: memories.embed }), 2);
    for (const d of [a, b]) {
      assert.equal((await db.repos.documents.bySource(d.u, d.source))?.collection, current, d.source);
      assert.equal(await store.count(d.old, { userId: d.u }), 0, d.source);
      assert.deepEqual(await all(current, d.u, d.source), d.chunks, d.source);
      assert.equal((await found(d.u, d.source, d.chunks[0]!.payload.text!))[0]?.id, d.chunks[0]!.id, d.source);
    }
  });

  it("a document whose re-upload FAILED is moved too: the earlier upload's chunks, which retrieval still finds, follow the model", async () => {
    const d = await documentOfOldModel("gil");
    await db.repos.documents.queue(d.u, { source: d.source, mediaType: "text/markdown", bytes: 1, jobId: "job-gil-2" });
    assert.ok(await db.repos.documents.failed(d.u, d.source, "job-gil-2", "the file is not valid UTF-8"));
    assert.equal(await reembedDocuments({ documents: db.repos.documents, store, embed: memories.embed }), 1);
    const row = await db.repos.documents.bySource(d.u, d.source);
    assert.equal(row?.status, "FAILED", "still the failed re-upload's row, with its error");
    assert.equal(row?.collection, current);
    assert.deepEqual(await all(current, d.u, d.source), d.chunks, "the earlier upload's chunks, same ids and payloads");
    assert.equal(await store.count(d.old, { userId: d.u }), 0);
    assert.equal((await found(d.u, d.source, d.chunks[1]!.payload.text!))[0]?.id, d.chunks[1]!.id, "retrieved from the current collection");
  });

  it("leaves documents that are not READY, and a document deleted meanwhile has no chunks left behind", async () => {
    const q = await documentOfOldModel("dan");
    // A re-upload queued: its own job writes the new version into the current collection.
    await db.repos.documents.queue(q.u, { source: q.source, mediaType: "text/markdown", bytes: 1, jobId: "job-dan-2" });
    assert.equal(await reembedDocuments({ documents: db.repos.documents, store, embed: memories.embed }), 0);
    assert.equal(await store.count(q.old, { userId: q.u, source: q.source }), q.chunks.length, "left where it was");

    // Deleted while its chunks were embedded (the API deletes the chunks of the collection the row named, then the row).
    const d = await documentOfOldModel("eva");
    const embed: typeof memories.embed = async (texts) => {
      const e = await memories.embed(texts);
      if (texts.length > 1) {
        const row = await db.repos.documents.bySource(d.u, d.source);
        if (row) {
          await store.deleteBySource(d.u, row.collection!, d.source);
          await db.repos.documents.delete(d.u, row.id);
        }
      }
      return e;
    };
    assert.equal(await reembedDocuments({ documents: db.repos.documents, store, embed }), 0);
    assert.equal(await store.count(current, { userId: d.u }), 0, "nothing of it in the current collection");
    assert.equal(await store.count(d.old, { userId: d.u }), 0);
  });

  it("a new upload of the source, written by another process while the old chunks were embedded, keeps its chunks", async () => {
    const d = await documentOfOldModel("fay");
    const NEW = "The new boiler has no reset button: it restarts by itself after a minute.";
    let fresh: { version: string; chunks: number } | undefined;
    // Deleted and uploaded again through the gateway, whose ingest worker (another process: no turn orders
    // it with upkeep's) writes the new version into the current collection, meanwhile.
    const embed: typeof memories.embed = async (texts) => {
      const e = await memories.embed(texts);
      if (texts.length > 1 && !fresh) {
        const row = (await db.repos.documents.bySource(d.u, d.source))!;
        await store.deleteBySource(d.u, row.collection!, d.source);
        await db.repos.documents.delete(d.u, row.id);
        await db.repos.documents.queue(d.u, { source: d.source, mediaType: "text/plain", bytes: NEW.length, jobId: "job-fay-2" });
        // Its write, as ingestDocument makes it (ingestDocument itself would wait for this process's turn).
        const version = "job-fay-2.1";
        const v = await memories.embed([NEW]);
        await store.upsert(current, [{ id: chunkPointId(d.source, 0, version), vector: v.vectors[0]!, payload: { ...d.chunks[0]!.payload, chunk: 0, text: NEW } }]);
        fresh = { version, chunks: 1 };
      }
      return e;
    };
    assert.equal(await reembedDocuments({ documents: db.repos.documents, store, embed }), 0);
    assert.ok(fresh, "the new upload was written during the move");
    const left = await all(current, d.u, d.source);
    assert.equal(left.length, fresh.chunks, "the new upload's chunks, and nothing else");
    assert.ok(left.every((p) => p.payload.text === NEW && p.id.endsWith(`@${fresh!.version}`)), JSON.stringify(left.map((p) => p.id)));
    assert.equal(await store.count(d.old, { userId: d.u }), 0, "nothing of the old version in the old collection");
  });

  it("a FAILED re-upload whose earlier chunks went with a dropped collection is not taken as moved for its own partial chunks", async () => {
    const d = await documentOfOldModel("hal");
    await db.repos.documents.queue(d.u, { source: d.source, mediaType: "text/markdown", bytes: 1, jobId: "job-hal-2" });
    // The re-upload's job wrote one chunk of its own version into the current collection, then failed for good.
    const v = await memories.embed(["half of the new manual"]);
    await store.upsert(current, [{ id: chunkPointId(d.source, 0, "job-hal-2.1"), vector: v.vectors[0]!, payload: { ...d.chunks[0]!.payload, text: "half of the new manual" } }]);
    assert.ok(await db.repos.documents.failed(d.u, d.source, "job-hal-2", "the engine went away"));
    await store.dropCollection(d.old);
    assert.equal(await reembedDocuments({ documents: db.repos.documents, store, embed: memories.embed }), 0);
    assert.equal((await db.repos.documents.bySource(d.u, d.source))?.collection, d.old, "not renamed: none of its chunks is in the current collection");
  });
});
