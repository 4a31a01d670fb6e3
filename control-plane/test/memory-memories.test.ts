// The Memories service with real parts: PGlite with pgvector (rows and
// vectors in the same embedded database) and a jota-inference serving the
// tiny embedding model. What is checked is the promise to the user: every
// memory row has exactly its vector, a forgotten memory is never found
// again, duplicates are not kept, a model change re-embeds everything.
import assert from "node:assert/strict";
import { openDatabase, type Database } from "../src/db/database";
import { NotFoundError } from "../src/db/repositories";
import type { EnginePool } from "../src/engines/pool";
import type { EngineProcess } from "../src/engines/process";
import { silentLogger } from "../src/log";
import { embedTexts } from "../src/memory/embedder";
import { InvalidMemoryError, MemoryAddNotUndoneError, Memories, MEMORY_KIND, memorySource } from "../src/memory/memories";
import { VectorRetriever } from "../src/memory/retrieve";
import { PgVectorStore } from "../src/memory/vector";
import { collectionName, type VectorStore } from "../src/memory/vector/store";
import { poolOf, startEmbedEngine } from "./helpers/jobs";
import { freshPgliteDir } from "./helpers/postgres-backends";

describe("memory: what Jota remembers about a user", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let db: Database;
  let store: PgVectorStore;
  let memories: Memories;
  let collection: string;

  before(async () => {
    engine = await startEmbedEngine();
    pool = await poolOf([engine.address!]);
    const dir = await freshPgliteDir();
    db = await openDatabase({ dataDir: dir, logger: silentLogger });
    store = await PgVectorStore.open({ dataDir: dir });
    memories = new Memories(db.repos, store, pool);
    collection = (await embedTexts(pool, ["probe"])).collection;
  });
  after(async () => {
    await store?.close();
    await db?.close();
    pool?.close();
    await engine?.stop();
  });

  const newUser = async (name: string) => (await db.repos.users.create({ username: name })).id;
  /** Resolves once an add in flight has written the user's first row. */
  const firstRowWritten = async (userId: string) => {
    const deadline = Date.now() + 10_000;
    while ((await db.repos.memories.list(userId)).items.length === 0) {
      assert.ok(Date.now() < deadline, "the first add never wrote its row");
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  /** The user's memory points in the current collection. */
  const points = (userId: string, source?: string) => store.count(collection, { userId, kind: MEMORY_KIND, ...(source ? { source } : {}) });

  it("add: a row and its vector, found first by its own text; the same text again is the same memory", async () => {
    const u = await newUser("ana");
    const { memory, created } = await memories.add(u, { text: "  Ana  prefers tea\nto coffee ", origin: "user" });
    assert.equal(created, true);
    assert.equal(memory.text, "Ana prefers tea to coffee", "white space collapsed");
    assert.equal(memory.collection, collection);
    assert.equal((await db.repos.memories.get(u, memory.id)).collection, collection, "the row records where its vector is");
    assert.equal(await points(u), 1);

    const found = await memories.search(u, "Ana prefers tea to coffee", 3);
    assert.equal(found[0]?.memory.id, memory.id);
    assert.ok(found[0]!.score > 0.999, `own text scores ~1 (${found[0]!.score})`);

    const again = await memories.add(u, { text: "ANA PREFERS TEA   TO COFFEE" });
    assert.equal(again.created, false);
    assert.equal(again.memory.id, memory.id);
    assert.equal(await points(u), 1, "no second vector");
    assert.equal((await db.repos.memories.list(u)).items.length, 1, "no second row");
  });

  it("refuses text that is no fact, writing nothing", async () => {
    const u = await newUser("bad");
    for (const text of ["", "   \n ", "x".repeat(501), 42 as unknown as string])
      await assert.rejects(memories.add(u, { text }), InvalidMemoryError, JSON.stringify(text).slice(0, 20));
    assert.equal((await db.repos.memories.list(u)).items.length, 0);
    assert.equal(await points(u), 0);
  });

  it("update: the new text replaces the vector under the same id", async () => {
    const u = await newUser("ben");
    const { memory } = await memories.add(u, { text: "Ben lives in Madrid" });
    const updated = await memories.update(u, memory.id, "Ben lives in Sevilla since 2024");
    assert.equal(updated.id, memory.id);
    assert.equal(updated.text, "Ben lives in Sevilla since 2024");
    assert.equal(updated.collection, collection);
    assert.equal(await points(u), 1, "one vector, replaced");
    const [top] = await store.query(collection, (await embedTexts(pool, ["Ben lives in Sevilla since 2024"])).vectors[0]!, { topK: 1, filter: { userId: u } });
    assert.equal(top?.id, memory.id);
    assert.equal(top?.payload.text, "Ben lives in Sevilla since 2024", "the stored payload is the new text");
    assert.ok(top!.score > 0.999);
  });

  it("corrections racing each other and a delete racing a correction: every row ends with exactly its own text's vector", async () => {
    const u = await newUser("race");
    for (let round = 0; round < 5; round++) {
      const { memory } = await memories.add(u, { text: `Race fact ${round}` });
      // Two corrections at once: whichever row write wins, its vector must be the one stored.
      await Promise.all([memories.update(u, memory.id, `Race fact ${round}, first correction`), memories.update(u, memory.id, `Race fact ${round}, second correction`)]);
      const row = await db.repos.memories.get(u, memory.id);
      const [top] = await store.query(collection, (await embedTexts(pool, [row.text])).vectors[0]!, { topK: 1, filter: { userId: u, source: memorySource(memory.id) } });
      assert.equal(top?.payload.text, row.text, `round ${round}: the stored vector is the row's text`);
      assert.equal(row.collection, collection);

      // A delete and a correction at once: if the row is gone, so is every vector of it.
      await Promise.allSettled([memories.delete(u, memory.id), memories.update(u, memory.id, `Race fact ${round}, late correction`)]);
      const left = await db.repos.memories.byIds(u, [memory.id]);
      assert.equal(await points(u, memorySource(memory.id)), left.length, `round ${round}: ${left.length} row(s), as many vectors`);
      if (left.length === 1) await memories.delete(u, memory.id);
    }
    assert.equal(await points(u), 0);
  });

  it("a correction whose vector cannot be written: the old text's vector is never retrieved, and a delete still removes it", async () => {
    const u = await newUser("kai");
    const { memory } = await memories.add(u, { text: "Kai's locker code is 4321" });
    // The real store, whose writes fail as a lost connection to it would (its reads and deletes still work).
    const failing: VectorStore = Object.create(store, {
      upsert: {
        value: async () => {
          throw new Error("connection to the vector store lost");
        },
      },
    });
    await assert.rejects(new Memories(db.repos, failing, pool).update(u, memory.id, "Kai's locker code is 9876"), /connection to the vector store lost/);
    const row = await db.repos.memories.get(u, memory.id);
    assert.equal(row.text, "Kai's locker code is 9876", "the row has the correction");
    assert.equal(row.collection, collection, "the row still names where its (old) vector is");
    assert.equal(row.embeddingModel, null, "but does not claim that vector");
    assert.equal(await points(u, memorySource(memory.id)), 1, "the old text's vector is still there");

    const retriever = new VectorRetriever(store, pool, { memories: db.repos.memories });
    const found = await retriever.retrieve(u, "Kai's locker code is 4321");
    assert.deepEqual(
      found.filter((f) => f.source === memorySource(memory.id)),
      [],
      "a vector its row does not claim is not retrieved",
    );

    await memories.delete(u, memory.id);
    assert.equal(await points(u, memorySource(memory.id)), 0, "the delete found the vector through the row");
  });

  it("an add whose vector cannot be written leaves nothing: no row, no vector", async () => {
    const u = await newUser("noa");
    // The real store, whose writes fail as a lost connection to it would (its reads and deletes still work).
    const failing: VectorStore = Object.create(store, {
      upsert: {
        value: async () => {
          throw new Error("connection to the vector store lost");
        },
      },
    });
    await assert.rejects(new Memories(db.repos, failing, pool).add(u, { text: "Noa's flat is on the third floor" }), /connection to the vector store lost/);
    assert.deepEqual((await db.repos.memories.list(u)).items, [], "the row is taken back");
    assert.equal(await points(u), 0);
    // Nothing left that would make the same text a duplicate: adding it again is a new memory.
    assert.equal((await memories.add(u, { text: "Noa's flat is on the third floor" })).created, true);
  });

  it("a second add of the same text while the first is storing its vector waits for it: when the first is taken back, the second makes its own", async () => {
    const u = await newUser("iker");
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let writes = 0;
    // The first write waits at the gate, then fails; later writes go through.
    const flaky: VectorStore = Object.create(store, {
      upsert: {
        value: async (...args: Parameters<VectorStore["upsert"]>) => {
          if (writes++ > 0) return store.upsert(...args);
          await gate;
          throw new Error("connection to the vector store lost");
        },
      },
    });
    const withFlaky = new Memories(db.repos, flaky, pool);
    const first = withFlaky.add(u, { text: "Iker keeps bees" }).then(
      () => assert.fail("the first add succeeded"),
      (e: unknown) => e,
    );
    await firstRowWritten(u); // and its vector write is waiting
    const second = withFlaky.add(u, { text: "Iker keeps bees" });
    await new Promise((r) => setTimeout(r, 200));
    release();
    assert.match(String(await first), /connection to the vector store lost/);
    const { memory, created } = await second;
    assert.equal(created, true, "the first add's row was taken back: the second is a memory of its own");
    assert.equal((await db.repos.memories.get(u, memory.id)).embeddingModel !== null, true, "the id the second add returned exists, claimed");
    assert.deepEqual((await db.repos.memories.list(u)).items.map((r) => r.id), [memory.id]);
    assert.equal(await points(u), 1);
  });

  it("an add whose store hangs past the wait: the second add adopts the row, and the first add's undo leaves it to that add", async () => {
    const u = await newUser("inma");
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const hanging: VectorStore = Object.create(store, {
      upsert: {
        value: async () => {
          await gate;
          throw new Error("the vector store timed out");
        },
      },
    });
    const withHanging = new Memories(db.repos, hanging, pool, { inFlightMs: 300 });
    const first = withHanging.add(u, { text: "Inma plays the cello" }).then(
      () => assert.fail("the first add succeeded"),
      (e: unknown) => e,
    );
    await firstRowWritten(u);
    const started = Date.now();
    const second = await withHanging.add(u, { text: "Inma plays the cello" });
    assert.ok(Date.now() - started >= 250, `the second add waited for the first (${Date.now() - started} ms)`);
    assert.equal(second.created, false);
    release();
    const err = await first;
    assert.ok(err instanceof MemoryAddNotUndoneError, String(err));
    assert.equal(err.memoryId, second.memory.id);
    const row = await db.repos.memories.get(u, second.memory.id);
    assert.equal(row.embeddingModel, null, "still unclaimed: upkeep embeds it");
    assert.equal((await db.repos.memories.list(u)).items.length, 1);
  });

  it("an add whose claim landed though the add saw it fail: the claimed row and its vector stay, and the error names it", async () => {
    const u = await newUser("olga");
    const rows = db.repos.memories;
    // The claim commits, then the connection goes before the add reads the row back.
    const repos = {
      ...db.repos,
      memories: Object.create(rows, {
        setEmbedded: {
          value: async (...args: Parameters<typeof rows.setEmbedded>) => {
            await rows.setEmbedded(...args);
            throw new Error("connection to the database lost");
          },
        },
      }),
    };
    const err: unknown = await new Memories(repos, store, pool).add(u, { text: "Olga sings in a choir" }).then(
      () => assert.fail("the add succeeded"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof MemoryAddNotUndoneError, String(err));
    const row = await rows.get(u, err.memoryId);
    assert.equal(row.embeddingModel !== null, true, "claimed: fully stored");
    assert.equal(await points(u), 1, "its vector stays with it");
    assert.equal((await memories.search(u, "Olga sings in a choir", 1))[0]?.memory.id, row.id);
  });

  it("an adopted row does not look in flight again: the next add of its text is answered at once", async () => {
    const u = await newUser("pilar");
    const quick = new Memories(db.repos, store, pool, { inFlightMs: 300 });
    // A row an add left unclaimed (it crashed, or its undo failed).
    const left = await db.repos.memories.create(u, { text: "Pilar grows tomatoes" }, collection);
    const first = await quick.add(u, { text: "Pilar grows tomatoes" });
    assert.equal(first.memory.id, left.id);
    // At once after the adoption: the row was created past the wait ago, though adopted just now.
    const started = performance.now();
    const again = await quick.add(u, { text: "Pilar grows tomatoes" });
    const took = performance.now() - started;
    assert.equal(again.memory.id, left.id);
    assert.ok(took < 250, `answered in ${Math.round(took)} ms, not after another wait`);
  });

  it("an add whose vector was written but not claimed (the database lost meanwhile): the vector and the row are taken back", async () => {
    const u = await newUser("ona");
    const repos = {
      ...db.repos,
      memories: Object.create(db.repos.memories, {
        setEmbedded: {
          value: async () => {
            throw new Error("connection to the database lost");
          },
        },
      }),
    };
    await assert.rejects(new Memories(repos, store, pool).add(u, { text: "Ona collects stamps" }), /connection to the database lost/);
    assert.deepEqual((await db.repos.memories.list(u)).items, []);
    assert.equal(await points(u), 0, "the vector the failed add stored is gone too");
  });

  it("an add that cannot be taken back either: the error says which memory stays; it is unclaimed, and a delete finds it", async () => {
    const u = await newUser("pau");
    const lost = async () => {
      throw new Error("connection to the database lost");
    };
    // The vector is stored, then the database goes: neither the claim nor the undo's delete of the row work.
    const repos = { ...db.repos, memories: Object.create(db.repos.memories, { setEmbedded: { value: lost }, deleteIfUnchanged: { value: lost } }) };
    const err: unknown = await new Memories(repos, store, pool).add(u, { text: "Pau's bike is blue" }).then(
      () => assert.fail("the add succeeded"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof MemoryAddNotUndoneError, String(err));
    assert.match(err.message, /could not be stored \(connection to the database lost\) and could not be taken back/);
    const rows = (await db.repos.memories.list(u)).items;
    assert.deepEqual(rows.map((r) => r.id), [err.memoryId], "the error names the memory that stays");
    assert.equal(rows[0]!.embeddingModel, null, "not claimed: retrieval ignores it");
    assert.equal(rows[0]!.collection, collection, "it names where its vector was");
    assert.equal(await points(u), 0, "the undo deleted the vector before failing on the row");
    await memories.delete(u, err.memoryId);
    assert.deepEqual((await db.repos.memories.list(u)).items, []);
  });

  it("retrieval takes a memory point only at its row's word: the row's text, the user's row, a row that exists", async () => {
    const u = await newUser("lea");
    const other = await newUser("mia");
    const { memory } = await memories.add(u, { text: "Lea's favourite colour is green" });
    const { memory: theirs } = await memories.add(other, { text: "Mia's favourite colour is green" });
    const vector = (await embedTexts(pool, ["Lea's favourite colour is red"])).vectors[0]!;
    const point = (id: string, text: string) => ({ id, vector, payload: { userId: u, kind: MEMORY_KIND, source: memorySource(id), text, title: "Memory" } });
    await store.upsert(collection, [
      // A stale copy of the text under the row's own id (as a write racing a correction could leave).
      point(memory.id, "Lea's favourite colour is red"),
      // A vector whose row was deleted (as a delete that could not reach the store would leave).
      point("0190f2a4-7c3e-7000-8000-000000000001", "Lea's favourite colour is red, erased"),
      // A point of this user naming another user's memory.
      point(theirs.id, "Lea's favourite colour is red, borrowed"),
    ]);
    const found = (await new VectorRetriever(store, pool, { memories: db.repos.memories }).retrieve(u, "Lea's favourite colour is red")).filter((f) => f.kind === MEMORY_KIND);
    assert.deepEqual(
      found.map((f) => [f.source, f.text]),
      [[memorySource(memory.id), "Lea's favourite colour is green"]],
    );
  });

  it("delete: the vector and the row go; another user's id is not found and deletes nothing", async () => {
    const u = await newUser("cai");
    const other = await newUser("dan");
    const { memory: keep } = await memories.add(u, { text: "Cai has a dog called Rufo" });
    const { memory: gone } = await memories.add(u, { text: "Cai plays the violin" });
    await assert.rejects(memories.delete(other, gone.id), NotFoundError);
    assert.equal(await points(u), 2);

    await memories.delete(u, gone.id);
    await assert.rejects(db.repos.memories.get(u, gone.id), NotFoundError);
    assert.equal(await points(u, memorySource(gone.id)), 0, "its vector is gone");
    const found = await memories.search(u, "Cai plays the violin", 5);
    assert.deepEqual(
      found.map((f) => f.memory.id),
      [keep.id],
      "never found again",
    );
    await assert.rejects(memories.delete(u, gone.id), NotFoundError);
  });

  it("deleteAll: everything of the user, nothing of anyone else's", async () => {
    const u = await newUser("eva");
    const other = await newUser("fer");
    for (const t of ["Eva runs on Sundays", "Eva is allergic to nuts", "Eva's sister is Lola"]) await memories.add(u, { text: t });
    await memories.add(other, { text: "Fer likes chess" });
    assert.equal(await memories.deleteAll(u), 3);
    assert.equal((await db.repos.memories.list(u)).items.length, 0);
    assert.equal(await points(u), 0);
    assert.equal(await points(other), 1);
    assert.equal((await memories.search(other, "Fer likes chess", 1))[0]?.memory.text, "Fer likes chess");
  });

  it("search never crosses users", async () => {
    const a = await newUser("gil");
    const b = await newUser("hao");
    await memories.add(a, { text: "Gil's bank PIN hint is the cat's birthday" });
    assert.deepEqual(await memories.search(b, "Gil's bank PIN hint is the cat's birthday", 5), []);
  });

  it("reembed: rows never embedded or embedded by another model get the current model's vector and lose the old one", async () => {
    const u = await newUser("ivo");
    const dim = (await embedTexts(pool, ["x"])).dimensions;
    // A row whose embedding never happened (a crash between the row and its vector).
    const bare = await db.repos.memories.create(u, { text: "Ivo works night shifts" });
    // A row whose vector came from another model, in that model's collection.
    const old = await db.repos.memories.create(u, { text: "Ivo's car is a red Seat" });
    const oldInfo = await store.ensureCollection("retired-model", dim);
    const vector = Array.from({ length: dim }, (_, i) => Math.sin(i + 1));
    await store.upsert(oldInfo.name, [{ id: old.id, vector, payload: { userId: u, kind: MEMORY_KIND, source: memorySource(old.id), text: old.text } }]);
    assert.ok(await db.repos.memories.setEmbedded(u, old.id, old.text, "retired-model", oldInfo.name));
    assert.equal(oldInfo.name, collectionName("retired-model", dim));

    const n = await memories.reembed();
    assert.ok(n >= 2, `both re-embedded (${n})`);
    for (const id of [bare.id, old.id]) {
      const row = await db.repos.memories.get(u, id);
      assert.equal(row.collection, collection);
      assert.equal(await points(u, memorySource(id)), 1);
    }
    assert.equal(await store.count(oldInfo.name, { userId: u }), 0, "the old model's vector is gone");
    assert.equal((await memories.search(u, "Ivo's car is a red Seat", 1))[0]?.memory.id, old.id);
    assert.equal(await memories.reembed(), 0, "nothing left to do");
  });

  it("dedupe: the same text kept once; near-duplicates by the threshold on their real embeddings; the newest stays", async () => {
    const u = await newUser("jon");
    // Rows written straight (add() would refuse the duplicate), then embedded.
    const first = await db.repos.memories.create(u, { text: "Jon drinks green tea" });
    await new Promise((r) => setTimeout(r, 5));
    const dup = await db.repos.memories.create(u, { text: "jon  drinks GREEN tea" });
    await new Promise((r) => setTimeout(r, 5));
    const a = await db.repos.memories.create(u, { text: "Jon has two daughters" });
    await new Promise((r) => setTimeout(r, 5));
    const b = await db.repos.memories.create(u, { text: "Jon has two daughters." });
    await memories.reembed();
    assert.equal(await points(u), 4);

    const [va, vb, vd] = (await embedTexts(pool, [a.text, b.text, dup.text])).vectors;
    const dot = (x: number[], y: number[]) => x.reduce((s, v, i) => s + v * y[i]!, 0);
    const cos = dot(va!, vb!);
    assert.ok(cos < 0.999999, `the two texts embed differently (${cos})`);
    // The test's premise: the near pair is nearer than either is to the tea fact.
    assert.ok(Math.max(dot(vd!, va!), dot(vd!, vb!)) < cos - 1e-4, "the near pair is the most similar pair");

    // A threshold just above their similarity: only the exact duplicate goes (the older of the two).
    assert.deepEqual(await memories.dedupe(u, cos + 1e-4), { exact: 1, near: 0 });
    const left = (await db.repos.memories.all(u)).map((m) => m.id).sort();
    assert.deepEqual(left, [dup.id, a.id, b.id].sort(), "of the same text, the newest stays");
    assert.equal(await points(u, memorySource(first.id)), 0);

    // Just below: the older of the near pair goes too.
    assert.deepEqual(await memories.dedupe(u, cos - 1e-4), { exact: 0, near: 1 });
    assert.deepEqual((await db.repos.memories.all(u)).map((m) => m.id).sort(), [dup.id, b.id].sort());
    assert.equal(await points(u), 2, "every row still has exactly its vector");
  });
});
