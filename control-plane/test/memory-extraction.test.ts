// Memory extraction, with real parts: a jota-inference serving the tiny chat
// model and the tiny embedding model, PGlite with pgvector. The model has
// random weights, so what it extracts is gibberish; what is checked is what
// must hold whatever it says: its output has the schema's shape (the
// engine's grammar), what it asks is applied exactly, every memory row has
// its vector, and the conversation's messages are read once.
import assert from "node:assert/strict";
import { openDatabase, type Database } from "../src/db/database";
import type { EnginePool } from "../src/engines/pool";
import type { EngineProcess } from "../src/engines/process";
import { silentLogger } from "../src/log";
import { applyOperations, extractMemories, parseOperations } from "../src/memory/extraction";
import { Memories, MEMORY_KIND, type ScoredMemory } from "../src/memory/memories";
import { PgVectorStore } from "../src/memory/vector";
import { requireFile, startEngine, testModel } from "./helpers/engines";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { chatArgs, runTurn, servingPool, userWithConversation } from "./helpers/turns";

describe("memory: extraction from conversations", function () {
  this.timeout(180_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let db: Database;
  let store: PgVectorStore;
  let memories: Memories;

  before(async () => {
    engine = await startEngine({ kind: "inference", args: [...chatArgs(2048), "--embed-model", requireFile(testModel("tiny-embed.gguf"))] });
    pool = await servingPool([engine.address!]);
    const dir = await freshPgliteDir();
    db = await openDatabase({ dataDir: dir, logger: silentLogger });
    store = await PgVectorStore.open({ dataDir: dir });
    memories = new Memories(db.repos, store, pool);
  });
  after(async () => {
    await store?.close();
    await db?.close();
    pool?.close();
    await engine?.stop();
  });

  /** Every memory row of the user has exactly its vector, and no vector is without a row. */
  async function assertInStep(userId: string) {
    const rows = await db.repos.memories.all(userId);
    for (const r of rows) assert.ok(r.collection, `memory ${r.id} has its vector`);
    const collections = [...new Set(rows.map((r) => r.collection!))];
    let total = 0;
    for (const c of collections) total += await store.count(c, { userId, kind: MEMORY_KIND });
    assert.equal(total, rows.length, "one vector per row");
  }

  it("parseOperations keeps well-formed operations and says why an output is unusable", () => {
    assert.deepEqual(parseOperations('{"memories":[{"event":"ADD","id":"","text":"likes tea"},{"event":"NOPE","id":"1","text":"x"},{"event":"DELETE","id":" 2 ","text":""}]}'), [
      { event: "ADD", id: "", text: "likes tea" },
      { event: "DELETE", id: "2", text: "" },
    ]);
    assert.deepEqual(parseOperations('{"memories":[]}'), []);
    assert.throws(() => parseOperations('{"memories":[{"event":"ADD"'), /not JSON/);
    assert.throws(() => parseOperations('{"other":1}'), /no memories array/);
  });

  it("applyOperations: ADD, UPDATE and DELETE by the number shown; unknown numbers and bad facts change nothing", async () => {
    const { userId, conversationId } = await userWithConversation(db, "apply");
    const a = (await memories.add(userId, { text: "The user lives in Bilbao" })).memory;
    const b = (await memories.add(userId, { text: "The user has a cat" })).memory;
    const c = (await memories.add(userId, { text: "The user works as a nurse" })).memory;
    const r = await applyOperations(memories, { userId, conversationId }, [a, b, c], [
      { event: "UPDATE", id: "1", text: "The user lives in Donostia" },
      { event: "DELETE", id: "2", text: "" },
      { event: "ADD", id: "", text: "The user speaks Basque" },
      { event: "ADD", id: "", text: "the user works as a NURSE" }, // already remembered
      { event: "UPDATE", id: "9", text: "no such memory" },
      { event: "DELETE", id: "abc", text: "" },
      { event: "ADD", id: "", text: "   " },
      { event: "UPDATE", id: "3", text: "y".repeat(600) },
    ]);
    assert.deepEqual(r, { added: 1, updated: 1, deleted: 1, ignored: 5 });
    const texts = (await db.repos.memories.all(userId)).map((m) => m.text).sort();
    assert.deepEqual(texts, ["The user lives in Donostia", "The user speaks Basque", "The user works as a nurse"]);
    const added = (await db.repos.memories.all(userId)).find((m) => m.text === "The user speaks Basque")!;
    assert.equal(added.origin, "extracted");
    assert.equal(added.conversationId, conversationId);
    await assertInStep(userId);
  });

  it("a real extraction: schema-shaped output applied, rows in step with vectors, each message read once", async () => {
    const { userId, conversationId } = await userWithConversation(db, "extract");
    for (const content of ["Me llamo Marta y vivo en Valencia.", "Tengo dos hijos, Pablo y Lucía.", "Soy vegetariana desde hace diez años."])
      await runTurn(db, pool, { userId, conversationId }, content, { maxTokens: 12 });
    const messages = await db.repos.messages.after(userId, conversationId, null, 100);
    assert.equal(messages.length, 6);

    const r = await extractMemories({ repos: db.repos, memories, pool, logger: silentLogger }, { userId, conversationId });
    assert.equal(r.skipped, undefined);
    assert.ok(r.read >= 1 && r.read <= 6, `read ${r.read}`);
    // The grammar makes the output parse; only a reply cut at its token limit may not.
    if (r.invalidOutput) assert.match(r.invalidOutput, /^cut at/);
    const rows = await db.repos.memories.all(userId);
    assert.equal(rows.length, r.added, "exactly what it added (nothing stored before)");
    for (const m of rows) {
      assert.equal(m.origin, "extracted");
      assert.equal(m.conversationId, conversationId);
      assert.ok(m.text.length >= 1 && m.text.length <= 160, "within the schema's bound");
    }
    await assertInStep(userId);
    assert.equal((await db.repos.conversations.get(userId, conversationId)).memoriesThroughId, messages[messages.length - 1]!.id, "cursor after the last message");

    // Nothing new: nothing read, nothing generated.
    const requests = async () => {
      const lease = pool.pickInference();
      const info = await lease.client.info();
      lease.release();
      return info.counters?.requests;
    };
    const before = await requests();
    const again = await extractMemories({ repos: db.repos, memories, pool, logger: silentLogger }, { userId, conversationId });
    assert.equal(again.skipped, "no new messages");
    const after = await requests();
    assert.equal(after, before, "no engine call");

    // A new turn: only its two messages are new.
    await runTurn(db, pool, { userId, conversationId }, "Mañana viajo a Lisboa.", { maxTokens: 8 });
    const third = await extractMemories({ repos: db.repos, memories, pool, logger: silentLogger }, { userId, conversationId });
    assert.equal(third.skipped, undefined);
    assert.ok(third.read <= 2, `read ${third.read}`);
    await assertInStep(userId);
  });

  it("the cursor moves only once what was extracted is stored: a worker that dies mid-extraction leaves the messages to the retry", async () => {
    const { userId, conversationId } = await userWithConversation(db, "dies");
    await runTurn(db, pool, { userId, conversationId }, "Me llamo Iker y trabajo en un astillero de Pasaia.", { maxTokens: 8 });
    const messages = await db.repos.messages.after(userId, conversationId, null, 100);
    // The first extraction stops for good inside its work (here in the memory search, before the model runs),
    // as a worker killed there would: nothing after that point ever runs, no error handler either.
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    let release!: (err: Error) => void;
    const never = new Promise<never>((_, reject) => (release = reject));
    class Dying extends Memories {
      override search(): Promise<ScoredMemory[]> {
        entered();
        return never;
      }
    }
    const dying = extractMemories({ repos: db.repos, memories: new Dying(db.repos, store, pool), pool, logger: silentLogger }, { userId, conversationId });
    await inside;
    assert.equal((await db.repos.conversations.get(userId, conversationId)).memoriesThroughId, null, "nothing is marked read while extraction runs");

    // The job's retry, on another worker.
    const r = await extractMemories({ repos: db.repos, memories, pool, logger: silentLogger }, { userId, conversationId });
    assert.equal(r.skipped, undefined, "the retry reads the messages");
    assert.ok(r.read >= 1, `read ${r.read}`);
    assert.equal((await db.repos.conversations.get(userId, conversationId)).memoriesThroughId, messages.at(-1)!.id, "read once stored");
    await assertInStep(userId);

    release(new Error("the worker is gone"));
    await assert.rejects(dying, /the worker is gone/);
    assert.equal((await db.repos.conversations.get(userId, conversationId)).memoriesThroughId, messages.at(-1)!.id, "the dead one changes nothing");
  });

  it("a deleted conversation is skipped, not failed", async () => {
    const { userId, conversationId } = await userWithConversation(db, "gone");
    await db.repos.conversations.delete(userId, conversationId);
    const r = await extractMemories({ repos: db.repos, memories, pool, logger: silentLogger }, { userId, conversationId });
    assert.equal(r.skipped, "the conversation was deleted");
  });
});
