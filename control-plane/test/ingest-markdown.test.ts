// Ingestion end to end with real parts: a generated Markdown document of
// about 100 KB, chunked by the real embedding model's tokenizer and embedded
// by a real jota-inference (tiny-embed.gguf, a BERT with random weights),
// stored in pgvector on embedded PGlite (the default store).
import assert from "node:assert/strict";
import type { EngineProcess } from "../src/engines/process";
import { InferenceEngineClient, openChannel } from "../src/engines/clients";
import { ingestDocument, type IngestProgress } from "../src/memory/ingest";
import { PgVectorStore } from "../src/memory/vector";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { markdownDocument } from "./helpers/documents";
import { requireFile, startEngine, testModel } from "./helpers/engines";

describe("ingest: a 100 KB Markdown document, end to end", function () {
  this.timeout(600_000);
  let engine: EngineProcess;
  let client: InferenceEngineClient;
  let store: PgVectorStore;

  before(async () => {
    engine = await startEngine({
      kind: "inference",
      // One thread: on a busy 2-core machine two llama.cpp threads wait on
      // each other (see scripts/bench/memory.ts) and Embed runs far slower.
      args: ["--embed-model", requireFile(testModel("tiny-embed.gguf")), "--threads", "1"],
    });
    const { options } = openChannel(engine.address!, { token: "", reconnectInitialMs: 100, reconnectMaxMs: 1000 });
    client = new InferenceEngineClient(engine.address!, options, 30_000);
    store = await PgVectorStore.open({ dataDir: await freshPgliteDir() });
  });
  after(async () => {
    await store?.close();
    client?.close();
    await engine?.stop();
  });

  it("stores token-bounded, overlapping chunks that cover the document, each found first by its own embedding", async () => {
    const text = markdownDocument(100 * 1024);
    assert.ok(Buffer.byteLength(text) >= 100 * 1024);
    const chunkTokens = 256;
    const events: IngestProgress[] = [];
    const res = await ingestDocument(
      { userId: "alice", source: "notes.md", text, title: "Field notes", language: "en", tags: ["notes"] },
      { engine: client, store, chunkTokens, overlapTokens: 32, onProgress: (p) => events.push(p) },
    );
    assert.ok(res.chunks > 50, `a 100 KB document makes many chunks (${res.chunks})`);
    assert.equal(res.replaced, 0);
    assert.equal(await store.count(res.collection, { userId: "alice", source: "notes.md" }), res.chunks);
    const info = await store.collection(res.collection);
    assert.equal(info.dim, (await client.info()).embeddingModel!.embeddingSize);

    // Read every chunk back from the store, in order.
    const stored = new Map<number, string>();
    const probe = (await client.embed({ inputs: ["x"], normalize: true, requestId: "" })).embeddings[0]!.values;
    for (const h of await store.query(res.collection, probe, { topK: 1000, filter: { userId: "alice", source: "notes.md" } })) {
      assert.equal(h.id, `notes.md#${h.payload.chunk}`);
      assert.equal(h.payload.title, "Field notes");
      assert.deepEqual(h.payload.tags, ["notes"]);
      stored.set(h.payload.chunk!, h.payload.text!);
    }
    assert.equal(stored.size, res.chunks);
    const chunks = Array.from({ length: res.chunks }, (_, i) => stored.get(i)!);

    // Slices of the original text, in order, covering all of it, overlapping.
    let prevStart = -1;
    let prevEnd = 0;
    let overlapping = 0;
    for (const [i, c] of chunks.entries()) {
      const start = text.indexOf(c, prevStart + 1);
      assert.ok(start >= 0, `chunk ${i} is a slice of the document`);
      assert.ok(start <= prevEnd, `chunk ${i} starts at ${start}, after the previous chunk ended (${prevEnd}): a gap`);
      if (i > 0 && start < prevEnd) overlapping++;
      prevStart = start;
      prevEnd = start + c.length;
    }
    assert.equal(prevEnd, text.length, "the last chunk ends where the document does");
    assert.ok(overlapping >= chunks.length / 2, `most consecutive chunks overlap (${overlapping} of ${chunks.length - 1})`);

    // Within the budget, by the model's own count; the embeddings the engine
    // makes again for each chunk find that chunk first.
    for (let i = 0; i < chunks.length; i += 32) {
      const batch = chunks.slice(i, i + 32);
      const emb = await client.embed({ inputs: batch, normalize: true, requestId: "" });
      for (const [k, e] of emb.embeddings.entries()) {
        const n = i + k;
        assert.ok(e.tokens - 2 <= chunkTokens, `chunk ${n} has ${e.tokens - 2} tokens (budget ${chunkTokens})`);
        const [top] = await store.query(res.collection, e.values, { topK: 1, filter: { userId: "alice" } });
        assert.equal(top?.id, `notes.md#${n}`, `chunk ${n}'s own embedding finds it first`);
        assert.ok(top!.score > 0.999, `chunk ${n} scores ${top!.score} against itself`);
      }
    }

    // Progress: every phase, embedding counted up to the number of chunks.
    const embeds = events.filter((e) => e.phase === "embed");
    assert.ok(events.some((e) => e.phase === "tokenize"));
    assert.deepEqual(
      embeds.map((e) => e.done),
      [...embeds.map((e) => e.done)].sort((a, b) => a - b),
    );
    assert.equal(embeds.at(-1)?.done, res.chunks);
    assert.deepEqual(events.at(-1), { phase: "store", done: res.chunks, total: res.chunks });
    for (const e of events) assert.ok(e.done <= e.total && e.done > 0, JSON.stringify(e));

    // Ingesting the source again replaces it: no duplicates, nothing left over.
    const again = await ingestDocument({ userId: "alice", source: "notes.md", text: text.slice(0, 20_000) }, { engine: client, store, chunkTokens });
    assert.equal(again.replaced, res.chunks);
    assert.equal(await store.count(res.collection, { userId: "alice", source: "notes.md" }), again.chunks);
  });
});
