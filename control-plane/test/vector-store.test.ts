// The vector store's behaviour, one suite run against every implementation:
// pgvector on embedded PGlite, pgvector on a real PostgreSQL server (when the
// server has the extension), and Qdrant (when QDRANT_URL points at one). No
// Qdrant can run on the development machines and a hand-made imitation
// would prove nothing about the real one, so without QDRANT_URL its leg is
// skipped, loudly, with the reason; so is the PostgreSQL leg when the
// server's pgvector package is missing (Debian bookworm does not ship one).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { QdrantClient } from "@qdrant/js-client-rest";
import {
  DimensionMismatchError,
  InvalidVectorInputError,
  PgVectorStore,
  PgvectorUnavailableError,
  QdrantVectorStore,
  UnknownCollectionError,
  UnknownDocumentError,
  type CollectionInfo,
  type MemoryPayload,
  type VectorPoint,
  type VectorStore,
} from "../src/memory/vector";
import { describeBackends, type BackendFixture } from "./helpers/postgres-backends";

// ---- the implementations ---------------------------------------------------

interface StoreFixture {
  /** A store on an empty database (pgvector) or with fresh collection names (Qdrant). */
  open(): Promise<VectorStore>;
  /** A second store on the same data, with nothing cached. */
  reopen(): Promise<VectorStore>;
}

function skipLoudly(ctx: Mocha.Context, leg: string, why: string): never {
  console.warn(`\n    !!! SKIPPED the ${leg} leg: ${why}\n`);
  ctx.skip();
}

function describeStores(title: string, body: (fx: StoreFixture) => void): void {
  describeBackends(title, (db: BackendFixture) => {
    const opened: VectorStore[] = [];
    let loc: Awaited<ReturnType<BackendFixture["fresh"]>>;
    before(async function () {
      // Probe once: a PostgreSQL server without pgvector skips the whole leg.
      const probe = await db.fresh();
      try {
        await (await PgVectorStore.open(probe)).close();
      } catch (err) {
        if (err instanceof PgvectorUnavailableError) skipLoudly(this, `${db.kind} pgvector`, err.message);
        throw err;
      }
    });
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    });
    body({
      async open() {
        loc = await db.fresh();
        await db.open(loc); // Jota's own Database on it too, migrations applied, as in production
        const s = await PgVectorStore.open(loc);
        opened.push(s);
        return s;
      },
      async reopen() {
        const s = await PgVectorStore.open(loc);
        opened.push(s);
        return s;
      },
    });
  });

  describe(`${title} (qdrant)`, function () {
    this.timeout(60_000);
    const url = process.env.QDRANT_URL;
    const opened: VectorStore[] = [];
    before(function () {
      if (!url) skipLoudly(this, "Qdrant", "QDRANT_URL is not set (no Qdrant server can run on this machine)");
    });
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    });
    after(async () => {
      if (!url) return;
      // Collections made by these tests carry a per-run marker in the model name.
      const client = new QdrantClient({ url, checkCompatibility: false });
      for (const c of (await client.getCollections()).collections)
        if (c.name.includes(`_t${runTag}_`)) await client.deleteCollection(c.name);
    });
    body({
      async open() {
        const s = await QdrantVectorStore.open({ url: url! });
        opened.push(s);
        return s;
      },
      async reopen() {
        const s = await QdrantVectorStore.open({ url: url! });
        opened.push(s);
        return s;
      },
    });
  });
}

// Collections live as long as their server (Qdrant) or database: model names
// unique per test keep tests apart on a shared Qdrant.
const runTag = randomUUID().slice(0, 8);
let modelN = 0;
const model = () => `t${runTag}_model_${++modelN}`;

// ---- helpers ------------------------------------------------------------------

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return d / Math.sqrt(na * nb);
}

/** Seeded PRNG (mulberry32): the same vectors every run. */
function rng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DIM = 8;
const randomVector = (r: () => number, dim = DIM) => Array.from({ length: dim }, () => r() * 2 - 1);

function point(id: string, vector: number[], payload: Partial<MemoryPayload> = {}): VectorPoint {
  return { id, vector, payload: { userId: "alice", kind: "note", source: "doc-1", ...payload } };
}

async function rejectsWith<E extends Error>(p: Promise<unknown>, type: new (...a: never[]) => E, message: RegExp): Promise<E> {
  let caught: unknown;
  await p.then(
    () => assert.fail(`expected ${type.name}`),
    (e) => (caught = e),
  );
  assert.ok(caught instanceof type, `expected ${type.name}, got ${String(caught)}`);
  assert.match((caught as E).message, message);
  return caught as E;
}

// ---- the behaviour --------------------------------------------------------------

describeStores("vector store", (fx) => {
  let store: VectorStore;
  let c: CollectionInfo;
  beforeEach(async () => {
    store = await fx.open();
    c = await store.ensureCollection(model(), DIM);
  });

  describe("collections", () => {
    it("one per (model, dimension): idempotent, and a second dimension is a second collection", async () => {
      assert.equal(c.dim, DIM);
      assert.equal(c.distance, "cosine");
      assert.deepEqual(await store.ensureCollection(c.model, DIM), c);
      const other = await store.ensureCollection(c.model, DIM * 2);
      assert.notEqual(other.name, c.name);
      assert.equal(other.dim, DIM * 2);
      assert.deepEqual(await store.collection(c.name), c);
    });

    it("collections and points survive reopening the store", async () => {
      await store.upsert(c.name, [point("p1", randomVector(rng(1)), { text: "kept" })]);
      const again = await fx.reopen();
      assert.deepEqual(await again.collection(c.name), c);
      assert.equal(await again.count(c.name), 1);
      const [hit] = await again.query(c.name, randomVector(rng(1)), { topK: 1, filter: { userId: "alice" } });
      assert.equal(hit?.payload.text, "kept");
    });

    it("dropCollection removes the collection and its points", async () => {
      await store.upsert(c.name, [point("p1", randomVector(rng(1)))]);
      await store.dropCollection(c.name);
      await rejectsWith(store.collection(c.name), UnknownCollectionError, new RegExp(c.name));
      const fresh = await store.ensureCollection(c.model, DIM);
      assert.equal(await store.count(fresh.name), 0);
    });
  });

  describe("upsert and query", () => {
    it("returns the top k by cosine similarity, best first, with the payload as stored", async () => {
      const r = rng(7);
      const points = Array.from({ length: 40 }, (_, i) =>
        point(`p${i}`, randomVector(r), {
          source: `doc-${i % 3}`,
          language: i % 2 ? "en" : "es",
          ...(i % 5 === 0 ? { tags: ["a", "b"] } : {}),
          title: `title ${i}`,
          text: `text ${i}`,
          chunk: i,
        }),
      );
      await store.upsert(c.name, points);
      assert.equal(await store.count(c.name), 40);

      const q = randomVector(r);
      const hits = await store.query(c.name, q, { topK: 5, filter: { userId: "alice" } });
      const expected = points
        .map((p) => ({ id: p.id, score: cosine(q, p.vector) }))
        .sort((a, b) => b.score - a.score)
        .slice(0, 5);
      assert.deepEqual(
        hits.map((h) => h.id),
        expected.map((e) => e.id),
      );
      for (const [i, h] of hits.entries()) {
        assert.ok(Math.abs(h.score - expected[i]!.score) < 1e-5, `score of ${h.id}: ${h.score} vs ${expected[i]!.score}`);
        if (i > 0) assert.ok(h.score <= hits[i - 1]!.score, "scores are in descending order");
        assert.deepEqual(h.payload, points.find((p) => p.id === h.id)!.payload);
      }
    });

    it("a point's own vector finds it first, with score 1", async () => {
      const r = rng(3);
      const points = Array.from({ length: 20 }, (_, i) => point(`p${i}`, randomVector(r)));
      await store.upsert(c.name, points);
      for (const p of points.slice(0, 5)) {
        const [top] = await store.query(c.name, p.vector, { topK: 1, filter: { userId: "alice" } });
        assert.equal(top?.id, p.id);
        assert.ok(Math.abs(top!.score - 1) < 1e-5);
      }
    });

    it("upserting an existing (user, id) replaces its vector and payload", async () => {
      const r = rng(11);
      await store.upsert(c.name, [point("p1", randomVector(r), { text: "old", tags: ["x"] })]);
      const v2 = randomVector(r);
      await store.upsert(c.name, [point("p1", v2, { text: "new", source: "doc-2" })]);
      assert.equal(await store.count(c.name), 1);
      const [hit] = await store.query(c.name, v2, { topK: 1, filter: { userId: "alice" } });
      assert.equal(hit?.id, "p1");
      assert.ok(Math.abs(hit!.score - 1) < 1e-5);
      assert.deepEqual(hit!.payload, { userId: "alice", kind: "note", source: "doc-2", text: "new" });
    });

    it("topK larger than the matches returns every match; an empty batch is a no-op", async () => {
      const r = rng(5);
      await store.upsert(c.name, [point("a", randomVector(r)), point("b", randomVector(r))]);
      await store.upsert(c.name, []);
      const hits = await store.query(c.name, randomVector(r), { topK: 50, filter: { userId: "alice" } });
      assert.deepEqual(hits.map((h) => h.id).sort(), ["a", "b"]);
    });
  });

  describe("filters", () => {
    const r = rng(21);
    const v = () => randomVector(r);
    beforeEach(async () => {
      await store.upsert(c.name, [
        point("n1", v(), { kind: "note", source: "s1", language: "en", tags: ["work", "urgent"] }),
        point("n2", v(), { kind: "note", source: "s2", language: "es", tags: ["work"] }),
        point("d1", v(), { kind: "document", source: "s1", language: "en" }),
        point("d2", v(), { kind: "document", source: "s3", tags: ["urgent"] }),
        point("n1", v(), { userId: "bob", kind: "note", source: "s1", language: "en", tags: ["work", "urgent"] }),
      ]);
    });
    const ids = async (filter: Parameters<VectorStore["query"]>[2]["filter"]) =>
      (await store.query(c.name, v(), { topK: 10, filter })).map((h) => h.id).sort();

    it("on kind, source, language and tags (every tag listed), alone and together", async () => {
      assert.deepEqual(await ids({ userId: "alice" }), ["d1", "d2", "n1", "n2"]);
      assert.deepEqual(await ids({ userId: "alice", kind: "note" }), ["n1", "n2"]);
      assert.deepEqual(await ids({ userId: "alice", source: "s1" }), ["d1", "n1"]);
      assert.deepEqual(await ids({ userId: "alice", language: "en" }), ["d1", "n1"]);
      assert.deepEqual(await ids({ userId: "alice", tags: ["urgent"] }), ["d2", "n1"]);
      assert.deepEqual(await ids({ userId: "alice", tags: ["work", "urgent"] }), ["n1"]);
      assert.deepEqual(await ids({ userId: "alice", kind: "document", source: "s1", language: "en" }), ["d1"]);
      assert.deepEqual(await ids({ userId: "alice", kind: "nothing" }), []);
      assert.equal(await store.count(c.name, { userId: "alice", tags: ["work"] }), 2);
      assert.equal(await store.count(c.name, { source: "s1" }), 3);
    });

    it("isolate users: another user's memories never come back, even for their exact vector", async () => {
      const bobs = randomVector(rng(99));
      await store.upsert(c.name, [point("secret", bobs, { userId: "bob", text: "bob's secret" })]);
      const hits = await store.query(c.name, bobs, { topK: 10, filter: { userId: "alice" } });
      assert.equal(hits.length, 4);
      assert.ok(hits.every((h) => h.payload.userId === "alice"));
      assert.ok(!hits.some((h) => h.payload.text === "bob's secret"));
      // The same id for two users is two points.
      assert.deepEqual(await ids({ userId: "bob" }), ["n1", "secret"]);
      assert.deepEqual(await ids({ userId: "carol" }), []);
    });

    it("a user with few points in a large collection still gets all of theirs (no truncation by the index)", async function () {
      this.timeout(180_000);
      const big = rng(5);
      const many = Array.from({ length: 1500 }, (_, i) => point(`m${i}`, randomVector(big), { userId: "mallory" }));
      await store.upsert(c.name, many);
      const hits = await store.query(c.name, randomVector(big), { topK: 4, filter: { userId: "alice", tags: ["urgent"] } });
      assert.deepEqual(hits.map((h) => h.id).sort(), ["d2", "n1"]);
      const all = await store.query(c.name, randomVector(big), { topK: 10, filter: { userId: "alice" } });
      assert.equal(all.length, 4);
    });
  });

  describe("delete by source", () => {
    it("deletes exactly that user's points from that source and says how many", async () => {
      const r = rng(31);
      await store.upsert(c.name, [
        point("a1", randomVector(r), { source: "a" }),
        point("a2", randomVector(r), { source: "a" }),
        point("b1", randomVector(r), { source: "b" }),
        point("a1", randomVector(r), { userId: "bob", source: "a" }),
      ]);
      assert.equal(await store.deleteBySource("alice", c.name, "a"), 2);
      assert.equal(await store.count(c.name, { userId: "alice" }), 1);
      assert.equal(await store.count(c.name, { userId: "alice", source: "a" }), 0);
      assert.equal(await store.count(c.name, { userId: "bob", source: "a" }), 1, "bob's point from the same source stays");
      const hits = await store.query(c.name, randomVector(r), { topK: 10, filter: { userId: "alice" } });
      assert.deepEqual(
        hits.map((h) => h.id),
        ["b1"],
      );
    });
  });

  describe("delete points", () => {
    it("deletes exactly that user's points of those ids and says how many (ids not there count for nothing)", async () => {
      const r = rng(37);
      await store.upsert(c.name, [
        point("p1", randomVector(r), { source: "p" }),
        point("p2", randomVector(r), { source: "p" }),
        point("p3", randomVector(r), { source: "p" }),
        point("p1", randomVector(r), { userId: "bob", source: "p" }),
      ]);
      assert.equal(await store.deletePoints("alice", c.name, ["p1", "p3", "never-there"]), 2);
      assert.equal(await store.deletePoints("alice", c.name, []), 0);
      assert.deepEqual((await store.listBySource("alice", c.name, "p")).points.map((x) => x.id), ["p2"]);
      assert.equal(await store.count(c.name, { userId: "bob", source: "p" }), 1, "bob's point of the same id stays");
    });
  });

  describe("list by source", () => {
    it("gives that user's points from that source with their payloads, page by page, each once", async () => {
      const r = rng(41);
      const mine = Array.from({ length: 7 }, (_, i) =>
        point(`doc#${i}`, randomVector(r), { kind: "document", source: "doc", title: "Doc", text: `chunk ${i}`, chunk: i, tags: ["t"], language: "en" }),
      );
      await store.upsert(c.name, [
        ...mine,
        point("other#0", randomVector(r), { source: "other" }),
        point("doc#0", randomVector(r), { userId: "bob", kind: "document", source: "doc", text: "bob's" }),
      ]);
      const seen: { id: string; payload: MemoryPayload }[] = [];
      let pages = 0;
      for (let after: string | undefined; ; pages++) {
        const page = await store.listBySource("alice", c.name, "doc", { limit: 3, ...(after ? { after } : {}) });
        assert.ok(page.points.length <= 3, `a page holds at most the limit (${page.points.length})`);
        seen.push(...page.points);
        if (!page.next) break;
        after = page.next;
      }
      assert.ok(pages >= 2, `paged (${pages + 1} pages)`);
      assert.deepEqual(
        seen.map((p) => p.id).sort(),
        mine.map((p) => p.id).sort(),
      );
      for (const p of seen) assert.deepEqual(p.payload, mine.find((m) => m.id === p.id)!.payload, p.id);
      assert.ok(seen.every((p) => !("vector" in p)), "no vectors");
      assert.deepEqual((await store.listBySource("alice", c.name, "nothing")).points, []);
      assert.deepEqual((await store.listBySource("bob", c.name, "doc")).points.map((p) => p.payload.text), ["bob's"]);
      await rejectsWith(store.listBySource("alice", "mem_nope_8_00000000", "doc"), UnknownCollectionError, /mem_nope/);
      await rejectsWith(store.listBySource("alice", c.name, "doc", { limit: 0 }), InvalidVectorInputError, /limit/);
    });
  });

  describe("errors", () => {
    it("dimension mismatch on upsert names both dimensions, and nothing of the batch is written", async () => {
      const r = rng(41);
      const e = await rejectsWith(
        store.upsert(c.name, [point("ok", randomVector(r)), point("bad", randomVector(r, DIM + 1))]),
        DimensionMismatchError,
        new RegExp(`holds ${DIM}-dimensional vectors, point "bad" has ${DIM + 1} dimensions`),
      );
      assert.equal(e.expected, DIM);
      assert.equal(e.actual, DIM + 1);
      assert.equal(e.operation, "upsert");
      assert.equal(await store.count(c.name), 0);
    });

    it("dimension mismatch on query names both dimensions", async () => {
      await store.upsert(c.name, [point("p", randomVector(rng(1)))]);
      const e = await rejectsWith(
        store.query(c.name, randomVector(rng(2), 3), { topK: 1, filter: { userId: "alice" } }),
        DimensionMismatchError,
        new RegExp(`holds ${DIM}-dimensional vectors, the query vector has 3 dimensions`),
      );
      assert.equal(e.operation, "query");
    });

    it("an unknown collection, for every operation", async () => {
      const name = "mem_nothing_8_00000000";
      const v = randomVector(rng(1));
      await rejectsWith(store.upsert(name, [point("p", v)]), UnknownCollectionError, /no vector collection "mem_nothing_8_00000000"/);
      await rejectsWith(store.query(name, v, { topK: 1, filter: { userId: "alice" } }), UnknownCollectionError, /mem_nothing/);
      await rejectsWith(store.count(name), UnknownCollectionError, /mem_nothing/);
      await rejectsWith(store.deleteBySource("alice", name, "s"), UnknownCollectionError, /mem_nothing/);
      await rejectsWith(store.collection("Robert'); DROP TABLE x;--"), UnknownCollectionError, /no vector collection/);
    });

    it("an unknown document, and another user's document, are the same clear error; theirs is kept", async () => {
      await store.upsert(c.name, [point("p", randomVector(rng(1)), { userId: "bob", source: "bobs-diary" })]);
      await rejectsWith(store.deleteBySource("alice", c.name, "never-ingested"), UnknownDocumentError, /user alice has no memories from source "never-ingested"/);
      const e = await rejectsWith(store.deleteBySource("alice", c.name, "bobs-diary"), UnknownDocumentError, /user alice has no memories from source "bobs-diary"/);
      assert.equal(e.source, "bobs-diary");
      assert.equal(await store.count(c.name, { userId: "bob" }), 1);
    });

    it("queries must name a user", async () => {
      const v = randomVector(rng(1));
      await rejectsWith(store.query(c.name, v, { topK: 1, filter: {} as never }), InvalidVectorInputError, /filter.userId is required/);
      await rejectsWith(store.query(c.name, v, { topK: 1, filter: { userId: "" } }), InvalidVectorInputError, /filter.userId is required/);
      await rejectsWith(store.query(c.name, v, { topK: 0, filter: { userId: "a" } }), InvalidVectorInputError, /topK must be an integer/);
    });

    it("bad vectors and payloads are refused before anything is written", async () => {
      const good = point("good", randomVector(rng(1)));
      const cases: [VectorPoint, RegExp][] = [
        [point("nan", [NaN, ...randomVector(rng(2), DIM - 1)]), /point "nan" has a non-finite value at index 0/],
        [point("zero", new Array(DIM).fill(0)), /point "zero" is all zeros/],
        [point("huge", [1e39, ...randomVector(rng(2), DIM - 1)]), /beyond 32-bit float range/],
        [point("", randomVector(rng(2))), /has no id/],
        [point("nouser", randomVector(rng(2)), { userId: "" }), /payload.userId/],
        [point("nosource", randomVector(rng(2)), { source: undefined as never }), /payload.source/],
        [point("tags", randomVector(rng(2)), { tags: ["ok", ""] }), /payload.tags/],
        [point("good", randomVector(rng(3))), /"good" appears twice/],
      ];
      for (const [bad, message] of cases) await rejectsWith(store.upsert(c.name, [good, bad]), InvalidVectorInputError, message);
      await rejectsWith(store.query(c.name, new Array(DIM).fill(0), { topK: 1, filter: { userId: "a" } }), InvalidVectorInputError, /all zeros/);
      await rejectsWith(store.ensureCollection("m", 0), InvalidVectorInputError, /dimension must be an integer/);
      await rejectsWith(store.ensureCollection("", 8), InvalidVectorInputError, /model's name is empty/);
      assert.equal(await store.count(c.name), 0);
    });
  });
});
