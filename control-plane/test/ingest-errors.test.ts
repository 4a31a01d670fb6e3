// Ingestion refuses bad input with a precise error and loses nothing: the
// previous version of the document is still there, whole, afterwards. Real
// engines: tiny-embed.gguf for embeddings, and a chat-only engine
// (tiny-chat.gguf) for "this engine cannot embed".
import assert from "node:assert/strict";
import type { EngineProcess } from "../src/engines/process";
import { InferenceEngineClient, openChannel } from "../src/engines/clients";
import { IngestError, ingestDocument, type IngestOptions } from "../src/memory/ingest";
import { PgVectorStore } from "../src/memory/vector";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { requireFile, startEngine, testModel } from "./helpers/engines";

function clientOf(engine: EngineProcess): InferenceEngineClient {
  const { options } = openChannel(engine.address!, { token: "", reconnectInitialMs: 100, reconnectMaxMs: 1000 });
  return new InferenceEngineClient(engine.address!, options, 30_000);
}

const ORIGINAL = Array.from({ length: 40 }, (_, i) => `Paragraph ${i} of the original version, with some words in it.`).join("\n\n");

describe("ingest: bad input gets a precise error and loses nothing", function () {
  this.timeout(300_000);
  let embedEngine: EngineProcess;
  let chatEngine: EngineProcess;
  let embed: InferenceEngineClient;
  let chat: InferenceEngineClient;
  let store: PgVectorStore;
  let collection: string;
  let opts: IngestOptions;

  before(async () => {
    [embedEngine, chatEngine] = await Promise.all([
      startEngine({ kind: "inference", args: ["--embed-model", requireFile(testModel("tiny-embed.gguf")), "--threads", "1"] }),
      startEngine({ kind: "inference" }), // tiny-chat.gguf, no embedding model
    ]);
    embed = clientOf(embedEngine);
    chat = clientOf(chatEngine);
    store = await PgVectorStore.open({ dataDir: await freshPgliteDir() });
    opts = { engine: embed, store, chunkTokens: 32, overlapTokens: 8 };
    const res = await ingestDocument({ userId: "alice", source: "doc", text: ORIGINAL }, opts);
    assert.ok(res.chunks > 5);
    collection = res.collection;
  });
  after(async () => {
    await store?.close();
    embed?.close();
    chat?.close();
    await Promise.all([embedEngine?.stop(), chatEngine?.stop()]);
  });

  /** The original version, chunk by chunk, exactly as first stored. */
  let snapshot: string[] | undefined;
  async function storedTexts(): Promise<string[]> {
    const probe = (await embed.embed({ inputs: ["probe"], normalize: true, requestId: "" })).embeddings[0]!.values;
    const hits = await store.query(collection, probe, { topK: 1000, filter: { userId: "alice", source: "doc" } });
    return hits.sort((a, b) => a.payload.chunk! - b.payload.chunk!).map((h) => h.payload.text!);
  }
  beforeEach(async () => {
    snapshot ??= await storedTexts();
  });
  afterEach(async () => {
    assert.deepEqual(await storedTexts(), snapshot, "the stored version is untouched");
  });

  async function refused(p: Promise<unknown>, message: RegExp) {
    await assert.rejects(p, (e: Error) => {
      assert.ok(e instanceof IngestError, `IngestError expected, got ${e}`);
      assert.match(e.message, message);
      return true;
    });
  }

  it("an ingestion no longer wanted (a newer upload, or the document deleted) writes nothing", async () => {
    let asked = 0;
    const stillWanted = async () => (asked++, false);
    await refused(ingestDocument({ userId: "alice", source: "doc", text: "A newer version.\n\nWith other words." }, { ...opts, stillWanted }), /replaced by a newer one or deleted/);
    assert.equal(asked, 1, "asked once, just before writing");
  });

  it("a document with no text", async () => {
    await refused(ingestDocument({ userId: "alice", source: "doc", text: "  \n\n " }, opts), /ingest of "doc": the document has no text/);
    await refused(ingestDocument({ userId: "alice", source: "doc", text: 42 as never }, opts), /document.text must be a string/);
  });

  it("a document without a user or a source", async () => {
    await refused(ingestDocument({ userId: "", source: "doc", text: "x" }, opts), /document.userId must be a non-empty string/);
    await refused(ingestDocument({ userId: "alice", source: "", text: "x" }, opts), /document.source must be a non-empty string/);
  });

  it("bad tags or kind, refused before the old version is replaced", async () => {
    await refused(ingestDocument({ userId: "alice", source: "doc", text: "new text", tags: ["ok", ""] }, opts), /document.tags must be an array of non-empty strings/);
    await refused(ingestDocument({ userId: "alice", source: "doc", text: "new text", kind: 7 as never }, opts), /document.kind must be a non-empty string/);
    await refused(ingestDocument({ userId: "alice", source: "doc", text: "new text", kind: "" }, opts), /document.kind must be a non-empty string/);
    await refused(ingestDocument({ userId: "alice", source: "doc", text: "new text", title: 1 as never }, opts), /document.title must be a string/);
  });

  it("chunks larger than the embedding model takes, or impossible overlap", async () => {
    const info = await embed.info();
    const max = info.embeddingModel!.contextSize;
    await refused(
      ingestDocument({ userId: "alice", source: "doc", text: "new text" }, { ...opts, chunkTokens: max }),
      new RegExp(`chunkTokens ${max} \\(\\+2 special tokens\\) exceeds the embedding model's ${max}-token input`),
    );
    await refused(ingestDocument({ userId: "alice", source: "doc", text: "x" }, { ...opts, chunkTokens: 32, overlapTokens: 17 }), /overlapTokens must be an integer from 0 to chunkTokens \/ 2/);
  });

  it("an engine with no embedding model", async () => {
    await refused(ingestDocument({ userId: "alice", source: "doc", text: "new text" }, { ...opts, engine: chat }), /the inference engine has no embedding model/);
  });

  it("an abort before the end writes nothing", async () => {
    const ac = new AbortController();
    const p = ingestDocument(
      { userId: "alice", source: "doc", text: ORIGINAL.replaceAll("original", "second") },
      { ...opts, signal: ac.signal, onProgress: (e) => e.phase === "embed" && ac.abort(new Error("job cancelled")) },
    );
    await assert.rejects(p, /job cancelled/);
  });
});
