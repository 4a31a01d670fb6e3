// Memories over REST, end to end with real parts: the gateway's PGlite with
// pgvector, its engine's embedding model, its private Redis and in-process
// memory worker. A user sees and erases what Jota remembers about them; a
// memory they erase is never retrieved again; after a chat turn (extraction
// on) the extraction job reads the conversation and what it stored is what
// the API lists.
import assert from "node:assert/strict";
import { api, startTestGateway, type TestGateway, type TestUser, until } from "./helpers/gateway";

describe("memories: list, add, correct, forget (REST)", function () {
  this.timeout(180_000);
  let t: TestGateway;
  let u: TestUser;
  let other: TestUser;
  before(async () => {
    // Extraction on, without waiting after the turn; every turn retrieves (so a memory can be cited).
    t = await startTestGateway({ env: { JOTA_MEMORY_EXTRACTION: "on", JOTA_MEMORY_DELAY_MS: "0", JOTA_RETRIEVAL: "always" } });
    u = await t.user("mem");
    other = await t.user("mem-other");
  });
  after(() => t?.close());

  const count = async (userId: string) => (await t.stack.db.repos.memories.all(userId)).length;

  it("add (201, then 200 for the same text), get, list, correct; the memory is cited by a turn about it", async () => {
    const a = await api(t, u.key, "POST", "/api/v1/memories", { text: "Mi coche es un Seat Ibiza rojo de 2012" });
    assert.equal(a.status, 201, a.text);
    assert.equal(a.headers.get("location"), `/api/v1/memories/${a.json.id}`);
    assert.deepEqual([a.json.text, a.json.origin, a.json.embedded, a.json.conversation_id], ["Mi coche es un Seat Ibiza rojo de 2012", "user", true, null]);
    const same = await api(t, u.key, "POST", "/api/v1/memories", { text: "mi coche es un SEAT Ibiza rojo de 2012" });
    assert.equal(same.status, 200);
    assert.equal(same.json.id, a.json.id);

    const got = await api(t, u.key, "GET", `/api/v1/memories/${a.json.id}`);
    assert.deepEqual(got.json, a.json);
    const list = await api(t, u.key, "GET", "/api/v1/memories");
    assert.equal(list.status, 200);
    assert.deepEqual(list.json.items.map((m: { id: string }) => m.id), [a.json.id]);

    const fixed = await api(t, u.key, "PATCH", `/api/v1/memories/${a.json.id}`, { text: "Mi coche es un Seat León gris de 2019" });
    assert.equal(fixed.status, 200, fixed.text);
    assert.equal(fixed.json.text, "Mi coche es un Seat León gris de 2019");

    const chat = await api(t, u.key, "POST", "/api/v1/chat", { content: "Mi coche es un Seat León gris de 2019", options: { max_tokens: 4 } });
    assert.equal(chat.status, 200, chat.text);
    const cited = chat.json.sources.find((s: { source: string }) => s.source === `memory:${a.json.id}`);
    assert.ok(cited, `the memory is a source: ${JSON.stringify(chat.json.sources)}`);
    assert.equal(cited.text, "Mi coche es un Seat León gris de 2019", "with its corrected text");
    assert.equal(cited.erased, false);

    // Forgotten: the turn that cited it keeps the citation, not the text.
    assert.equal((await api(t, u.key, "DELETE", `/api/v1/memories/${a.json.id}`)).status, 204);
    const req = await api(t, u.key, "GET", `/api/v1/requests/${chat.json.request_id}`);
    const after = req.json.sources.find((s: { source: string }) => s.source === `memory:${a.json.id}`);
    assert.deepEqual([after.text, after.erased, after.id], ["", true, cited.id]);
    assert.ok(req.json.sources.filter((s: { source: string }) => s.source !== `memory:${a.json.id}`).every((s: { erased: boolean }) => !s.erased), "other sources untouched");
  });

  it("forget one (204): never retrieved again; forget all (200 with the count)", async () => {
    const a = await api(t, u.key, "POST", "/api/v1/memories", { text: "Mi dentista es la doctora Ruiz" });
    const b = await api(t, u.key, "POST", "/api/v1/memories", { text: "Mi cumpleaños es el 3 de mayo" });
    assert.equal(b.status, 201);
    const del = await api(t, u.key, "DELETE", `/api/v1/memories/${a.json.id}`);
    assert.equal(del.status, 204);
    assert.equal((await api(t, u.key, "GET", `/api/v1/memories/${a.json.id}`)).status, 404);
    assert.equal((await api(t, u.key, "DELETE", `/api/v1/memories/${a.json.id}`)).status, 404);
    const chat = await api(t, u.key, "POST", "/api/v1/chat", { content: "Mi dentista es la doctora Ruiz", options: { max_tokens: 4 } });
    assert.equal(chat.status, 200, chat.text);
    assert.ok(!chat.json.sources.some((s: { source: string }) => s.source === `memory:${a.json.id}`), "a forgotten memory is not retrieved");

    const before = await count(u.userId);
    assert.ok(before >= 1);
    const all = await api(t, u.key, "DELETE", "/api/v1/memories");
    assert.equal(all.status, 200);
    assert.equal(all.json.deleted, before);
    assert.equal(await count(u.userId), 0);
    assert.deepEqual((await api(t, u.key, "GET", "/api/v1/memories")).json.items, []);
  });

  it("bad input and other users' memories: the documented errors, nothing changed", async () => {
    const mine = await api(t, u.key, "POST", "/api/v1/memories", { text: "Trabajo en Bilbao" });
    assert.equal(mine.status, 201);
    const n = await count(u.userId);
    const cases: [string, string, unknown, number, string][] = [
      ["POST", "/api/v1/memories", { text: "" }, 400, "validation_error"],
      ["POST", "/api/v1/memories", { text: "x".repeat(501) }, 400, "validation_error"],
      ["POST", "/api/v1/memories", { text: 42 }, 400, "validation_error"],
      ["POST", "/api/v1/memories", { text: "ok", extra: 1 }, 400, "validation_error"],
      ["PATCH", `/api/v1/memories/${mine.json.id}`, { text: "   " }, 400, "validation_error"],
      ["GET", "/api/v1/memories/not-a-uuid", undefined, 404, "not_found"],
    ];
    for (const [method, p, body, status, code] of cases) {
      const r = await api(t, u.key, method, p, body);
      assert.equal(r.status, status, `${method} ${p} ${JSON.stringify(body)?.slice(0, 40)}: ${r.text}`);
      assert.equal(r.json.error.code, code);
    }
    for (const [method, body] of [["GET"], ["PATCH", { text: "hijacked" }], ["DELETE"]] as const) {
      const r = await api(t, other.key, method, `/api/v1/memories/${mine.json.id}`, body);
      assert.equal(r.status, 404, `${method} by another user`);
    }
    assert.equal((await api(t, other.key, "DELETE", "/api/v1/memories")).json.deleted, 0);
    assert.equal(await count(u.userId), n);
    assert.equal((await api(t, u.key, "GET", `/api/v1/memories/${mine.json.id}`)).json.text, "Trabajo en Bilbao");
    const noScope = await t.user("mem-noscope", ["chat"]);
    assert.equal((await api(t, noScope.key, "GET", "/api/v1/memories")).status, 403);
    assert.equal((await api(t, undefined, "GET", "/api/v1/memories")).status, 401);
  });

  it("an add the vector store cannot take: 503 memory_unavailable, and nothing was added", async () => {
    const w = await t.user("mem-store-down");
    const store = t.stack.store!;
    // The gateway's own store, whose writes fail as a lost connection would (reads and deletes still work).
    // Only this user's: extraction jobs of the other tests' turns may be writing meanwhile.
    const upsert = store.upsert.bind(store);
    store.upsert = async (collection, points) => {
      if (points.some((p) => p.payload.userId === w.userId)) throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
      return upsert(collection, points);
    };
    try {
      const r = await api(t, w.key, "POST", "/api/v1/memories", { text: "Mi perro se llama Tor" });
      assert.equal(r.status, 503, r.text);
      assert.equal(r.json.error.code, "memory_unavailable");
      assert.deepEqual(r.json.error.details, {}, "no memory_id: nothing stays");
      assert.ok(r.headers.get("retry-after"));
    } finally {
      delete (store as { upsert?: unknown }).upsert; // the prototype's again
    }
    assert.deepEqual((await api(t, w.key, "GET", "/api/v1/memories")).json.items, [], "listing shows no new memory");
    assert.equal(await count(w.userId), 0);
    const again = await api(t, w.key, "POST", "/api/v1/memories", { text: "Mi perro se llama Tor" });
    assert.equal(again.status, 201, "a retry is a new memory, not the leftover of the failed one");
    assert.equal(again.json.embedded, true);
  });

  it("an add that can be neither finished nor taken back names the memory that stays (not embedded): 503 for a lost database, 500 for a fault", async () => {
    const rows = t.stack.db.repos.memories;
    // The vector is written, then the database goes (or a bug strikes): the row can neither claim it nor be
    // deleted (only this user's: extraction jobs of the other tests' turns may be writing meanwhile).
    const cases = [
      // The shapes Prisma over @prisma/adapter-pg throws (its dist/index.js maps pg's errors to them).
      { name: "postgres", fault: () => Object.assign(new Error("terminating connection due to administrator command"), { name: "DriverAdapterError", cause: { kind: "postgres", code: "57P01" } }), status: 503, code: "memory_unavailable" },
      { name: "adapter", fault: () => Object.assign(new Error("ConnectionClosed"), { name: "DriverAdapterError", cause: { kind: "ConnectionClosed" } }), status: 503, code: "memory_unavailable" },
      { name: "prisma", fault: () => Object.assign(new Error("Server has closed the connection."), { code: "P1017" }), status: 503, code: "memory_unavailable" },
      { name: "pg", fault: () => new Error("Connection terminated unexpectedly"), status: 503, code: "memory_unavailable" },
      { name: "fault", fault: () => new TypeError("Cannot read properties of undefined (reading 'id')"), status: 500, code: "internal_error" },
    ];
    for (const c of cases) {
      const w = await t.user(`mem-undo-${c.name}`);
      const lost = <A extends unknown[], R>(f: (userId: string, ...rest: A) => Promise<R>) => async (userId: string, ...rest: A): Promise<R> => {
        if (userId === w.userId) throw c.fault();
        return f.call(rows, userId, ...rest);
      };
      Object.assign(rows, { setEmbedded: lost(rows.setEmbedded), deleteIfUnchanged: lost(rows.deleteIfUnchanged) });
      let r;
      try {
        r = await api(t, w.key, "POST", "/api/v1/memories", { text: "Mi loro se llama Pico" });
      } finally {
        delete (rows as { setEmbedded?: unknown }).setEmbedded;
        delete (rows as { deleteIfUnchanged?: unknown }).deleteIfUnchanged;
      }
      assert.equal(r.status, c.status, `${c.name}: ${r.text}`);
      assert.equal(r.json.error.code, c.code, c.name);
      assert.match(r.json.error.message, /memory \S+ stays, not yet embedded/, c.name);
      if (c.status === 500) assert.doesNotMatch(r.json.error.message, /Cannot read/, "a fault's own message stays in the log");
      const listed = (await api(t, w.key, "GET", "/api/v1/memories")).json.items;
      assert.deepEqual(r.json.error.details, { memory_id: listed[0]?.id, embedded: false }, c.name);
      assert.deepEqual(listed.map((m: { text: string; embedded: boolean }) => [m.text, m.embedded]), [["Mi loro se llama Pico", false]], c.name);
      if (c.status === 503) assert.ok(r.headers.get("retry-after"), c.name);
      assert.equal((await api(t, w.key, "DELETE", `/api/v1/memories/${r.json.error.details.memory_id}`)).status, 204);
      assert.equal(await count(w.userId), 0, c.name);
    }
  });

  it("after a chat turn the extraction job reads the conversation; what it stored is what the API lists", async () => {
    const w = await t.user("mem-extract");
    const chat = await api(t, w.key, "POST", "/api/v1/chat", { content: "Me llamo Iker y soy profesor de música en Vitoria.", options: { max_tokens: 8 } });
    assert.equal(chat.status, 200, chat.text);
    const conversationId: string = chat.json.conversation_id;
    const conv = await until("the extraction to read the turn", 60_000, () => t.stack.db.repos.conversations.get(w.userId, conversationId), (c) => c.memoriesThroughId !== null);
    const last = (await t.stack.db.repos.messages.recent(w.userId, conversationId, 1))[0]!;
    assert.equal(conv.memoriesThroughId, last.id, "read through the reply");
    const rows = await t.stack.db.repos.memories.all(w.userId);
    const listed = (await api(t, w.key, "GET", "/api/v1/memories?limit=200")).json.items;
    assert.deepEqual(listed.map((m: { id: string }) => m.id).sort(), rows.map((r) => r.id).sort());
    for (const m of listed) {
      assert.equal(m.origin, "extracted");
      assert.equal(m.conversation_id, conversationId);
      assert.equal(m.embedded, true);
    }
  });
});
