// Retrieval in the turn, with real parts: one jota-inference serving the tiny
// chat model and the tiny embedding model, a document ingested into pgvector
// on the turn's own PGlite database, and the turn retrieving from it. A
// vector store that fails is a real one whose database was closed under it.
import assert from "node:assert/strict";
import { openDatabase, type Database } from "../src/db/database";
import { InferenceEngineClient, openChannel } from "../src/engines/clients";
import type { EnginePool } from "../src/engines/pool";
import type { EngineProcess } from "../src/engines/process";
import { silentLogger } from "../src/log";
import { ingestDocument } from "../src/memory/ingest";
import { VectorRetriever, type Retriever } from "../src/memory/retrieve";
import { PgVectorStore } from "../src/memory/vector";
import { IntentRouter } from "../src/router/router";
import { turn, type TurnDeps, type TurnEvent, type TurnOptions } from "../src/sessions/turn";
import { requireFile, startEngine, testModel } from "./helpers/engines";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { chatArgs, last, servingPool, userWithConversation } from "./helpers/turns";

const PARAGRAPHS = [
  "El riego del huerto se hace los martes y los viernes, a primera hora, con la manguera larga del cobertizo.",
  "La contraseña del wifi de invitados está apuntada en la libreta azul del segundo cajón de la cocina.",
  "El seguro del coche vence el 14 de marzo; la póliza está a nombre de Ana y cubre a todo riesgo con franquicia.",
];

describe("turn: retrieval", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let client: InferenceEngineClient;
  let db: Database;
  let store: PgVectorStore;
  let retriever: Retriever;

  before(async () => {
    engine = await startEngine({ kind: "inference", args: [...chatArgs(2048), "--embed-model", requireFile(testModel("tiny-embed.gguf"))] });
    pool = await servingPool([engine.address!]);
    const { options } = openChannel(engine.address!, { token: "", reconnectInitialMs: 100, reconnectMaxMs: 1000 });
    client = new InferenceEngineClient(engine.address!, options, 30_000);
    const dir = await freshPgliteDir();
    db = await openDatabase({ dataDir: dir, logger: silentLogger });
    store = await PgVectorStore.open({ dataDir: dir }); // the same PGlite instance as the database
    retriever = new VectorRetriever(store, pool, { memories: db.repos.memories });
  });
  after(async () => {
    await store?.close();
    await db?.close();
    client?.close();
    pool?.close();
    await engine?.stop();
  });

  async function run(deps: Partial<TurnDeps>, ids: { userId: string; conversationId: string }, content: string, opts: TurnOptions = {}) {
    const events: TurnEvent[] = [];
    for await (const ev of turn({ repos: db.repos, pool, logger: silentLogger, ...deps }, { ...ids, content }, { maxTokens: 8, ...opts })) events.push(ev);
    return events;
  }
  const started = (events: TurnEvent[]) => events.find((e) => e.type === "started") as Extract<TurnEvent, { type: "started" }>;

  it("puts the user's best chunks in the prompt and returns them as sources, stored on the request", async () => {
    const ids = await userWithConversation(db, "ana");
    // Chunks of at most 48 tokens, cut at blank lines: one per paragraph.
    await ingestDocument({ userId: ids.userId, source: "casa.md", title: "Notas de casa", text: PARAGRAPHS.join("\n\n") }, { engine: client, store, chunkTokens: 48, overlapTokens: 0 });

    // The same message in two fresh conversations of the user, without and with retrieval.
    const without = await run({}, ids, PARAGRAPHS[1]!);
    const second = { userId: ids.userId, conversationId: (await db.repos.conversations.create(ids.userId)).id };
    const withCtx = await run({ retrieval: { retriever, mode: "always" } }, second, PARAGRAPHS[1]!);
    const done = last(withCtx, "done");
    assert.equal(done.status, "COMPLETED");
    assert.ok(done.sources.length >= 1, "something was retrieved");
    // The message is one chunk's exact text: that chunk comes first, with the top score.
    assert.equal(done.sources[0]!.text.trim(), PARAGRAPHS[1]);
    assert.ok(done.sources[0]!.score > 0.99, `score ${done.sources[0]!.score}`);
    assert.deepEqual(
      done.sources.map((s) => [s.source, s.title, s.kind]),
      done.sources.map(() => ["casa.md", "Notas de casa", "document"]),
    );
    assert.ok(done.sources.every((s, i) => i === 0 || s.score <= done.sources[i - 1]!.score), "best first");
    // The context went into the prompt: the same message costs more tokens with it.
    assert.ok(started(withCtx).promptTokens > started(without).promptTokens + 20, `${started(withCtx).promptTokens} vs ${started(without).promptTokens}`);
    assert.deepEqual(last(without, "done").sources, []);

    const req = await db.repos.requests.get(ids.userId, done.requestId);
    assert.deepEqual(req.sources, JSON.parse(JSON.stringify(done.sources)));
    assert.equal(req.errorType, null);
  });

  it("never retrieves another user's chunks", async () => {
    const owner = await userWithConversation(db, "owner");
    await ingestDocument({ userId: owner.userId, source: "secreto.md", text: PARAGRAPHS[2]! }, { engine: client, store, chunkTokens: 48, overlapTokens: 0 });
    const other = await userWithConversation(db, "other");
    const done = last(await run({ retrieval: { retriever, mode: "always" } }, other, PARAGRAPHS[2]!), "done");
    assert.ok(done.sources.every((s) => s.source !== "secreto.md"), JSON.stringify(done.sources.map((s) => s.source)));
  });

  it("'auto' retrieves only for turns the router sends to needs_context", async () => {
    const ids = await userWithConversation(db, "auto");
    await ingestDocument({ userId: ids.userId, source: "notas.md", text: PARAGRAPHS.join("\n\n") }, { engine: client, store, chunkTokens: 48, overlapTokens: 0 });
    const router = new IntentRouter({ logger: silentLogger });
    const deps = { router, retrieval: { retriever, mode: "auto" as const } };
    const chat = last(await run(deps, ids, "Hola, ¿qué tal estás hoy?"), "done");
    assert.deepEqual(chat.sources, []);
    const ctx = await run(deps, ids, "Según mis notas, ¿cuándo vence el seguro del coche?");
    assert.equal(started(ctx).route.route, "needs_context");
    assert.ok(last(ctx, "done").sources.length >= 1);
  });

  it("a vector store that is down: the turn still answers, without context, and the request says why", async () => {
    const down = await PgVectorStore.open({ dataDir: await freshPgliteDir() });
    await down.close(); // its database is gone: every query fails
    const ids = await userWithConversation(db, "down");
    const events = await run({ retrieval: { retriever: new VectorRetriever(down, pool, { memories: db.repos.memories }), mode: "always" } }, ids, "¿Dónde está la contraseña del wifi?");
    const done = last(events, "done");
    assert.equal(done.status, "COMPLETED");
    assert.deepEqual(done.sources, []);
    assert.match(done.retrievalError ?? "", /vector store could not be queried/);
    const req = await db.repos.requests.get(ids.userId, done.requestId);
    assert.deepEqual([req.status, req.errorType], ["COMPLETED", "VECTOR_STORE_UNAVAILABLE"]);
    assert.match(req.error ?? "", /vector store could not be queried/);
    const stored = await db.repos.messages.recent(ids.userId, ids.conversationId, 10);
    assert.deepEqual(stored.map((m) => [m.role, m.content]), [["USER", "¿Dónde está la contraseña del wifi?"], ["ASSISTANT", done.text]]);
  });
});
