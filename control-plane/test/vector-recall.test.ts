// Index recall: on 10,000 random 384-dimensional vectors (the dimension of
// bge-small, Jota's real embedding model), the store's approximate top 10
// must agree with exact brute force (computed here, in JavaScript) on at
// least 95 % of results. Run against each implementation, like
// vector-store.test.ts: pgvector on PGlite, on PostgreSQL when the server has
// pgvector, and Qdrant when QDRANT_URL is set (otherwise skipped loudly).
//
// "Random" here means random with the shape of real embeddings: points drawn
// from a 64-dimensional Gaussian mapped into 384 dimensions by a fixed random
// matrix, plus isotropic noise carrying 20 % of each vector's energy, then
// normalised; the queries are fresh draws from the same distribution. Real
// sentence embeddings concentrate near a low-dimensional manifold like this.
// Independent uniform coordinates are not a test of an index but of the curse
// of dimensionality: there every point is nearly equidistant from a query
// (measured on PGlite, 10k such vectors: recall@10 0.57 at ef_search 100 and
// 0.83 at 200, m = 16; an exact scan is the only way to 0.95), and no
// embedding model produces them.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { PgVectorStore, PgvectorUnavailableError, QdrantVectorStore, type VectorStore } from "../src/memory/vector";
import { describeBackends } from "./helpers/postgres-backends";

const N = 10_000;
const DIM = 384;
const LATENT = 64;
const NOISE = 0.5; // per-coordinate std of the noise against ~1 for the signal: 20 % of the energy
const QUERIES = 50;
const K = 10;

function rng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded source of unit vectors with the structure described above. */
function embeddingLike(seed: number): () => Float32Array {
  const r = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  const mix = Float64Array.from({ length: DIM * LATENT }, gauss);
  return () => {
    const z = Array.from({ length: LATENT }, gauss);
    const v = new Float32Array(DIM);
    let norm = 0;
    for (let i = 0; i < DIM; i++) {
      let x = 0;
      for (let k = 0; k < LATENT; k++) x += mix[i * LATENT + k]! * z[k]!;
      const y = x / Math.sqrt(LATENT) + NOISE * gauss();
      v[i] = y;
      norm += y * y;
    }
    norm = Math.sqrt(norm);
    for (let i = 0; i < DIM; i++) v[i]! /= norm;
    return v;
  };
}

/** Exact top k by cosine similarity (the vectors are unit length: the dot product). */
function bruteForce(data: Float32Array[], q: Float32Array, k: number): string[] {
  const scored = data.map((v, i) => {
    let d = 0;
    for (let j = 0; j < DIM; j++) d += v[j]! * q[j]!;
    return [i, d] as const;
  });
  scored.sort((a, b) => b[1] - a[1]);
  return scored.slice(0, k).map(([i]) => `v${i}`);
}

const next = embeddingLike(2024);
const data = Array.from({ length: N }, next);
const queries = Array.from({ length: QUERIES }, next);

async function measureRecall(store: VectorStore, bulk?: PgVectorStore): Promise<{ recall: number; collection: string }> {
  const c = await store.ensureCollection(`recall-${randomUUID().slice(0, 8)}`, DIM);
  // The fast path for a bulk load (see pgvector.ts): insert, then build the
  // index once; the index tested is the same either way.
  if (bulk) await bulk.dropAnnIndex(c.name);
  for (let i = 0; i < N; i += 1000)
    await store.upsert(
      c.name,
      data.slice(i, i + 1000).map((v, k) => ({ id: `v${i + k}`, vector: v, payload: { userId: "u", kind: "test", source: "recall" } })),
    );
  if (bulk) await bulk.buildAnnIndex(c.name);
  assert.equal(await store.count(c.name), N);
  let hits = 0;
  for (const q of queries) {
    const exact = new Set(bruteForce(data, q, K));
    const got = await store.query(c.name, q, { topK: K, filter: { userId: "u" } });
    assert.equal(got.length, K);
    for (const h of got) if (exact.has(h.id)) hits++;
  }
  return { recall: hits / (QUERIES * K), collection: c.name };
}

describeBackends("vector recall@10 on 10,000 vectors of 384 dimensions", (fx) => {
  it("pgvector's HNSW index answers the queries, with recall >= 0.95", async function () {
    this.timeout(1_800_000);
    let store: PgVectorStore;
    try {
      // ef_search 200, not the store's default 400 (tuned for 100k vectors):
      // at 10k, PostgreSQL's planner prices an HNSW scan with ef_search 400
      // above an exact scan and takes the exact scan, which would pass
      // without testing the index at all.
      store = await PgVectorStore.open(await fx.fresh(), { efSearch: 200 });
    } catch (err) {
      if (!(err instanceof PgvectorUnavailableError)) throw err;
      console.warn(`\n    !!! SKIPPED the ${fx.kind} pgvector leg: ${err.message}\n`);
      return this.skip();
    }
    try {
      const { recall, collection } = await measureRecall(store, store);
      // An exact scan would pass trivially: the plan must use the index.
      const plan = await store.plan(collection, queries[0]!, { topK: K, filter: { userId: "u" } });
      assert.match(plan, new RegExp(`Index Scan using ${collection}_hnsw`), plan);
      console.log(`      recall@10 = ${recall.toFixed(3)} (${fx.kind})`);
      assert.ok(recall >= 0.95, `recall@10 ${recall}`);
    } finally {
      await store.close();
    }
  });
});

describe("vector recall@10 on 10,000 vectors of 384 dimensions (qdrant)", () => {
  it("Qdrant's index answers with recall >= 0.95", async function () {
    this.timeout(600_000);
    const url = process.env.QDRANT_URL;
    if (!url) {
      console.warn("\n    !!! SKIPPED the Qdrant leg: QDRANT_URL is not set (no Qdrant server can run on this machine)\n");
      return this.skip();
    }
    const store = await QdrantVectorStore.open({ url });
    const { recall, collection } = await measureRecall(store);
    console.log(`      recall@10 = ${recall.toFixed(3)} (qdrant)`);
    await store.dropCollection(collection);
    assert.ok(recall >= 0.95, `recall@10 ${recall}`);
  });
});
