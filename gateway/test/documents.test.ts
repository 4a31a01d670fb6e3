// Documents over REST, end to end with real parts: the gateway's own Redis
// (a private redis-server), its in-process ingest worker, the engine's
// embedding model and pgvector on the gateway's PGlite.
import assert from "node:assert/strict";
import { chunkText, collectionName } from "@jota/control-plane";
import { markdownDocument } from "../../control-plane/test/helpers/documents";
import { api, startTestGateway, type TestGateway, type TestUser, until } from "./helpers/gateway";

describe("documents: upload, ingest job, list, delete", function () {
  this.timeout(600_000);
  let t: TestGateway;
  let u: TestUser;
  let other: TestUser;
  before(async () => {
    t = await startTestGateway();
    u = await t.user("docs");
    other = await t.user("docs-other");
  });
  after(() => t?.close());

  const embedder = () => t.stack.pool.inference[0]!.client;

  it("a ~1 MB Markdown document: 202, progress through the job, READY with its chunks, each found first by its own embedding", async () => {
    const text = markdownDocument(1_000_000, 7);
    const up = await api(t, u.key, "POST", "/api/v1/documents", { source: "big.md", title: "Big notes", text });
    assert.equal(up.status, 202, up.text.slice(0, 500));
    assert.equal(up.json.document.status, "queued");
    assert.equal(up.json.document.bytes, Buffer.byteLength(text));
    assert.equal(up.headers.get("location"), `/api/v1/documents/${up.json.document.id}`);
    const jobUrl: string = up.json.links.job;

    // Progress as a client sees it, polled.
    const seen: { phase: string; done: number; total: number }[] = [];
    const job = await until("the job to finish", 540_000, async () => {
      const r = await api(t, u.key, "GET", jobUrl);
      assert.equal(r.status, 200, r.text);
      if (r.json.progress) seen.push(r.json.progress);
      return r.json;
    }, (j) => j.state === "completed" || j.state === "failed");
    assert.equal(job.state, "completed", job.failed_reason);
    assert.ok(job.result.chunks > 500, `a 1 MB document makes many chunks (${job.result.chunks})`);
    const phases = [...new Set(seen.map((p) => p.phase))];
    assert.ok(phases.includes("embed"), `progress phases seen: ${phases.join(", ")}`);
    const embeds = seen.filter((p) => p.phase === "embed");
    assert.ok(embeds.every((p) => p.total === job.result.chunks && p.done <= p.total), "embed progress counts the chunks");
    assert.ok(embeds.some((p) => p.done < p.total), "progress was seen mid-way, not only at the end");

    const doc = await until("the document to be READY", 10_000, () => api(t, u.key, "GET", `/api/v1/documents/${up.json.document.id}`), (r) => r.json?.status !== "queued");
    assert.deepEqual([doc.json.status, doc.json.chunks, doc.json.error], ["ready", job.result.chunks, null]);

    // Every chunk, embedded again by the engine, finds itself first among the
    // user's points. The chunks are made again the way the worker made them
    // (ingest.ts's defaults: 256 tokens, 32 of overlap, the embedding model's
    // own tokenizer): more of them than one query may return.
    const info = (await embedder().info()).embeddingModel!;
    const collection = collectionName((await embedder().embed({ inputs: ["x"], normalize: true, requestId: "" })).model || info.name, info.embeddingSize);
    assert.equal(await t.stack.store!.count(collection, { userId: u.userId, source: "big.md" }), job.result.chunks);
    const count = async (s: string) => (await embedder().tokenize({ text: s, addSpecial: false, parseSpecial: true, embeddingModel: true })).ids.length;
    const chunks = await chunkText(text, count, { chunkTokens: 256, overlapTokens: 32 });
    assert.equal(chunks.length, job.result.chunks);
    // The version the chunks carry: the upload's job id and its creation time (jobs/worker.ts), which the row names.
    const version = (await t.stack.db.repos.documents.bySource(u.userId, "big.md"))?.chunksVersion;
    assert.ok(version?.startsWith(`${up.json.job.id}.`), `the row names a version of its upload's job (${version})`);
    for (let i = 0; i < chunks.length; i += 64) {
      const batch = chunks.slice(i, i + 64);
      const emb = await embedder().embed({ inputs: batch.map((c) => c.text), normalize: true, requestId: "" });
      for (const [k, e] of emb.embeddings.entries()) {
        const [top] = await t.stack.store!.query(collection, e.values, { topK: 1, filter: { userId: u.userId } });
        assert.equal(top?.id, `big.md#${i + k}@${version}`, `chunk ${i + k} finds itself first (its id names its upload's version)`);
        assert.equal(top!.payload.text, batch[k]!.text);
      }
    }
  });

  it("the same document again is the same job; delete forgets the row and its chunks", async () => {
    const body = { source: "small.md", text: "# Nota\n\nLas llaves de repuesto están en la maceta del balcón." };
    const a = await api(t, u.key, "POST", "/api/v1/documents", body);
    const b = await api(t, u.key, "POST", "/api/v1/documents", body);
    assert.equal(a.status, 202);
    assert.equal(b.status, 202);
    assert.equal(b.json.job.id, a.json.job.id, "one job");
    assert.equal(b.json.document.id, a.json.document.id, "one row");
    await until("READY", 60_000, () => api(t, u.key, "GET", `/api/v1/documents/${a.json.document.id}`), (r) => r.json?.status === "ready");
    const listed = await api(t, u.key, "GET", "/api/v1/documents?limit=10");
    assert.ok(listed.json.items.some((d: { id: string }) => d.id === a.json.document.id));

    const info = (await embedder().info()).embeddingModel!;
    const collection = collectionName(info.name, info.embeddingSize);
    assert.equal(await t.stack.store!.count(collection, { userId: u.userId, source: "small.md" }), 1);
    // Another user can neither see nor delete it.
    assert.equal((await api(t, other.key, "GET", `/api/v1/documents/${a.json.document.id}`)).status, 404);
    assert.equal((await api(t, other.key, "DELETE", `/api/v1/documents/${a.json.document.id}`)).status, 404);
    assert.equal((await api(t, other.key, "GET", a.json.links.job)).status, 404);

    const del = await api(t, u.key, "DELETE", `/api/v1/documents/${a.json.document.id}`);
    assert.equal(del.status, 204, del.text);
    assert.equal((await api(t, u.key, "GET", `/api/v1/documents/${a.json.document.id}`)).status, 404);
    assert.equal(await t.stack.store!.count(collection, { userId: u.userId, source: "small.md" }), 0);

    // The same text uploaded again after the delete is ingested again (its old job had completed).
    const c = await api(t, u.key, "POST", "/api/v1/documents", body);
    assert.equal(c.status, 202, c.text);
    assert.notEqual(c.json.document.id, a.json.document.id, "a new row");
    await until("READY again", 60_000, () => api(t, u.key, "GET", `/api/v1/documents/${c.json.document.id}`), (r) => r.json?.status === "ready");
    assert.equal(await t.stack.store!.count(collection, { userId: u.userId, source: "small.md" }), 1);
  });

  it("bad uploads are 400s naming the field, and store nothing", async () => {
    const before = (await api(t, u.key, "GET", "/api/v1/documents?limit=100")).json.items.length;
    for (const [b, field] of [
      [{ text: "x" }, "source"],
      [{ source: "a.md", text: "   " }, "text"],
      [{ source: "a.md", text: 42 }, "text"],
      [{ source: "a.md", text: "x", media_type: "application/pdf" }, "media_type"],
      [{ source: "a.md", text: "x", extra: 1 }, "extra"],
    ] as const) {
      const r = await api(t, u.key, "POST", "/api/v1/documents", b);
      assert.equal(r.status, 400, `${JSON.stringify(b)}: ${r.text}`);
      assert.equal(r.json.error.code, "validation_error");
      assert.match(JSON.stringify(r.json.error.details), new RegExp(field), r.text);
    }
    assert.equal((await api(t, u.key, "GET", "/api/v1/documents?limit=100")).json.items.length, before);
  });
});

describe("documents: ingestion that cannot succeed", function () {
  this.timeout(120_000);
  let t: TestGateway;
  before(async () => {
    t = await startTestGateway({ embeddings: false });
  });
  after(() => t?.close());

  it("no embedding model: the job fails after its attempts and the document is FAILED with the reason", async () => {
    const u = await t.user("noembed");
    const up = await api(t, u.key, "POST", "/api/v1/documents", { source: "n.md", text: "Una nota que no se puede indexar." });
    assert.equal(up.status, 202, up.text);
    const job = await until("the job to fail", 60_000, async () => (await api(t, u.key, "GET", up.json.links.job)).json, (j) => j.state === "failed");
    assert.equal(job.attempts_made, 3);
    assert.match(job.failed_reason, /embedding model/);
    const doc = await until("FAILED", 10_000, () => api(t, u.key, "GET", `/api/v1/documents/${up.json.document.id}`), (r) => r.json?.status !== "queued");
    assert.equal(doc.json.status, "failed");
    assert.match(doc.json.error, /embedding model/);
  });
});
