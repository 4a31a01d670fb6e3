// REST conversations (api/conversations.ts): create, list with cursor
// pagination, get, rename, delete; each user sees only their own; bad input
// is a precise error that changes nothing stored.
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { conversationRoutes } from "../src/api/conversations";
import { ErrorBody } from "../src/api/schemas";
import { api, startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";

// These tests make many calls with one key; rate limits have their own tests.
const NO_RATE_LIMIT = { JOTA_RATE_LIMIT: "1000000", JOTA_RATE_BURST: "1000000" };

const MAX_BODY = 16_384;

describe("REST /api/v1/conversations", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let alice: TestUser;
  let bob: TestUser;

  before(async () => {
    t = await startTestGateway({ slots: 1, ctxSize: 512, embeddings: false, env: { JOTA_MAX_BODY_BYTES: String(MAX_BODY), ...NO_RATE_LIMIT } });
    alice = await t.user("alice");
    bob = await t.user("bob");
  });
  after(async () => {
    await t?.close();
  });

  /** Everything stored for a user, to show that a refused request changed nothing. */
  async function stored(userId: string) {
    const prisma = t.stack.db.prisma;
    const [conversations, messages, requests] = await Promise.all([
      prisma.conversation.findMany({ where: { userId }, orderBy: { id: "asc" } }),
      prisma.message.count({ where: { userId } }),
      prisma.request.count({ where: { userId } }),
    ]);
    return { conversations, messages, requests };
  }

  /** The error shape, with its status and code. */
  function assertError(r: { status: number; json: unknown }, status: number, code: string) {
    assert.equal(r.status, status, JSON.stringify(r.json));
    const e = ErrorBody.parse(r.json);
    assert.equal(e.error.code, code);
    return e.error;
  }

  it("creates, gets, renames and deletes a conversation", async () => {
    const created = await api(t, alice.key, "POST", "/api/v1/conversations", { title: "  Plans for Sunday " });
    assert.equal(created.status, 201);
    const c = conversationRoutes.create.responses[201].schema.parse(created.json);
    assert.equal(c.title, "Plans for Sunday");
    assert.equal(created.headers.get("location"), `/api/v1/conversations/${c.id}`);
    assert.equal(c.created_at, c.last_message_at);

    const got = await api(t, alice.key, "GET", `/api/v1/conversations/${c.id}`);
    assert.equal(got.status, 200);
    assert.deepEqual(conversationRoutes.get.responses[200].schema.parse(got.json), c);

    const renamed = await api(t, alice.key, "PATCH", `/api/v1/conversations/${c.id}`, { title: "Sunday" });
    assert.equal(renamed.status, 200);
    const r = conversationRoutes.rename.responses[200].schema.parse(renamed.json);
    assert.equal(r.title, "Sunday");
    assert.equal(r.id, c.id);
    assert.ok(r.updated_at >= c.updated_at);
    assert.equal((await t.stack.db.repos.conversations.get(alice.userId, c.id)).title, "Sunday");

    const del = await api(t, alice.key, "DELETE", `/api/v1/conversations/${c.id}`);
    assert.equal(del.status, 204);
    assert.equal(del.text, "");
    assertError(await api(t, alice.key, "GET", `/api/v1/conversations/${c.id}`), 404, "not_found");
    assertError(await api(t, alice.key, "DELETE", `/api/v1/conversations/${c.id}`), 404, "not_found");
  });

  it("creates a conversation without a body (title null)", async () => {
    const res = await fetch(`${t.url}/api/v1/conversations`, { method: "POST", headers: { authorization: `Bearer ${alice.key}` } });
    assert.equal(res.status, 201);
    const c = conversationRoutes.create.responses[201].schema.parse(await res.json());
    assert.equal(c.title, null);
  });

  it("lists with cursor pagination, most recently active first, every conversation once", async () => {
    const carol = await t.user("carol");
    const made: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await api(t, carol.key, "POST", "/api/v1/conversations", { title: `c${i}` });
      made.push(r.json.id);
    }
    const seen: { id: string; last_message_at: string }[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const r = await api(t, carol.key, "GET", `/api/v1/conversations?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      assert.equal(r.status, 200);
      const page = conversationRoutes.list.responses[200].schema.parse(r.json);
      sizes.push(page.items.length);
      seen.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual(sizes, [2, 2, 1]);
    assert.deepEqual(seen.map((c) => c.id).sort(), [...made].sort());
    const order = [...seen].sort((a, b) => (a.last_message_at === b.last_message_at ? (a.id < b.id ? 1 : -1) : a.last_message_at < b.last_message_at ? 1 : -1));
    assert.deepEqual(seen.map((c) => c.id), order.map((c) => c.id), "newest activity first, ties by id");

    // A conversation that gets a message moves to the front.
    await t.stack.db.repos.messages.append(carol.userId, made[0]!, { role: "USER", content: "hola" });
    const first = await api(t, carol.key, "GET", "/api/v1/conversations?limit=1");
    assert.equal(first.json.items[0].id, made[0]);
    assert.equal(typeof first.json.next_cursor, "string");

    // Nobody else's conversations are in the list.
    const bobs = await api(t, bob.key, "GET", "/api/v1/conversations");
    assert.ok(bobs.json.items.every((c: { id: string }) => !made.includes(c.id)));
  });

  it("refuses bad pagination parameters with the field named", async () => {
    const before = await stored(alice.userId);
    for (const [q, field] of [
      ["limit=0", "limit"],
      ["limit=201", "limit"],
      ["limit=ten", "limit"],
      ["cursor=not-a-cursor", "cursor"],
      ["page=2", "page"],
    ] as const) {
      const e = assertError(await api(t, alice.key, "GET", `/api/v1/conversations?${q}`), 400, "validation_error");
      assert.equal(e.details.field, field, q);
    }
    assert.deepEqual(await stored(alice.userId), before);
  });

  it("refuses a forged cursor of the right shape (an id that is not a UUID, an instant that is not one) as a 400 on cursor", async () => {
    const c = (await api(t, alice.key, "POST", "/api/v1/conversations", { title: "paged" })).json;
    const before = await stored(alice.userId);
    const forge = (v: unknown) => encodeURIComponent(Buffer.from(JSON.stringify(v)).toString("base64url"));
    const now = new Date().toISOString();
    const forged = [
      { at: now, id: "not-a-uuid" },
      { at: now, id: "' OR 1=1 --" },
      { at: now, id: "" },
      { at: "-271821-04-20T00:00:00.000Z", id: c.id },
      { at: "+275760-09-13T00:00:00.000Z", id: c.id },
      { at: "2024-02-30T00:00:00.000Z", id: c.id },
      { at: "yesterday", id: c.id },
      { at: 0, id: c.id },
      null,
    ];
    // Every list pages with the same cursor; those of other resources are checked here too.
    for (const path of ["/api/v1/conversations", `/api/v1/conversations/${c.id}/messages`, "/api/v1/requests", "/api/v1/documents", "/api/v1/memories"])
      for (const v of forged) {
        const r = await api(t, alice.key, "GET", `${path}?cursor=${forge(v)}`);
        const e = assertError(r, 400, "validation_error");
        assert.equal(e.details.field, "cursor", `${path} ${JSON.stringify(v)}: ${JSON.stringify(r.json)}`);
      }
    // A cursor the API handed out still pages.
    await api(t, alice.key, "POST", "/api/v1/conversations", { title: "paged too" });
    const first = await api(t, alice.key, "GET", "/api/v1/conversations?limit=1");
    assert.equal(typeof first.json.next_cursor, "string");
    assert.equal((await api(t, alice.key, "GET", `/api/v1/conversations?limit=1&cursor=${encodeURIComponent(first.json.next_cursor)}`)).status, 200);
    assert.equal((await stored(alice.userId)).conversations.length, before.conversations.length + 1, "only the conversation made here was added");
  });

  it("another user's conversation is not found, for every verb, and stays as it was", async () => {
    const c = (await api(t, alice.key, "POST", "/api/v1/conversations", { title: "private" })).json;
    const before = await stored(alice.userId);
    assertError(await api(t, bob.key, "GET", `/api/v1/conversations/${c.id}`), 404, "not_found");
    assertError(await api(t, bob.key, "PATCH", `/api/v1/conversations/${c.id}`, { title: "mine now" }), 404, "not_found");
    assertError(await api(t, bob.key, "DELETE", `/api/v1/conversations/${c.id}`), 404, "not_found");
    assertError(await api(t, bob.key, "GET", `/api/v1/conversations/${c.id}/messages`), 404, "not_found");
    assert.deepEqual(await stored(alice.userId), before);
    // A malformed id is as unknown as another user's.
    assertError(await api(t, alice.key, "GET", "/api/v1/conversations/not-a-uuid"), 404, "not_found");
  });

  it("refuses bad bodies precisely and stores nothing", async () => {
    const c = (await api(t, alice.key, "POST", "/api/v1/conversations", { title: "keep me" })).json;
    const before = await stored(alice.userId);
    const cases: [string, string, unknown, string][] = [
      ["POST", "/api/v1/conversations", { title: 42 }, "title"],
      ["POST", "/api/v1/conversations", { title: "   " }, "title"],
      ["POST", "/api/v1/conversations", { title: "x".repeat(201) }, "title"],
      ["POST", "/api/v1/conversations", { title: "ok", colour: "red" }, "colour"],
      ["PATCH", `/api/v1/conversations/${c.id}`, {}, "title"],
      ["PATCH", `/api/v1/conversations/${c.id}`, { title: null }, "title"],
      ["PATCH", `/api/v1/conversations/${c.id}`, { title: "new", summary: "x" }, "summary"],
    ];
    for (const [method, path, body, field] of cases) {
      const e = assertError(await api(t, alice.key, method, path, body), 400, "validation_error");
      assert.equal(e.details.field, field, JSON.stringify(body));
      assert.match(e.message, new RegExp(`^${field}: `));
    }
    // Malformed JSON, a body too large, and a body that is not JSON.
    assertError(await api(t, alice.key, "POST", "/api/v1/conversations", '{"title": "x"', { "content-type": "application/json" }), 400, "invalid_json");
    const big = await api(t, alice.key, "POST", "/api/v1/conversations", { title: "x".repeat(MAX_BODY) });
    assert.equal(assertError(big, 413, "payload_too_large").details.limit, MAX_BODY);
    assertError(await api(t, alice.key, "PATCH", `/api/v1/conversations/${c.id}`, "title=x", { "content-type": "application/x-www-form-urlencoded" }), 415, "unsupported_media_type");
    assertError(await api(t, alice.key, "POST", "/api/v1/conversations", "hello", { "content-type": "text/plain" }), 415, "unsupported_media_type");
    assert.deepEqual(await stored(alice.userId), before);
  });

  it("a body that is not what its Content-Encoding says is a 400 invalid_encoding; an unknown encoding a 415; a gzip body is read", async () => {
    const before = await stored(alice.userId);
    // fetch sends the bytes as they are: it compresses nothing itself.
    const send = async (encoding: string, body: Buffer) => {
      const res = await fetch(`${t.url}/api/v1/conversations`, {
        method: "POST",
        headers: { authorization: `Bearer ${alice.key}`, "content-type": "application/json", "content-encoding": encoding },
        body,
      });
      return { status: res.status, json: (await res.json()) as unknown };
    };
    const json = Buffer.from(JSON.stringify({ title: "compressed" }));
    for (const [encoding, body] of [
      ["gzip", Buffer.from("this is not gzip at all")],
      ["gzip", gzipSync(json).subarray(0, 12)], // cut short
      ["deflate", Buffer.from("nor is this deflate")],
      ["br", Buffer.from("nor brotli, this")],
    ] as const) {
      const e = assertError(await send(encoding, body), 400, "invalid_encoding");
      assert.equal(typeof e.details.reason, "string", encoding);
    }
    assertError(await send("compress", json), 415, "unsupported_media_type");
    assert.deepEqual(await stored(alice.userId), before);

    const ok = await send("gzip", gzipSync(json));
    assert.equal(ok.status, 201, JSON.stringify(ok.json));
    assert.equal((ok.json as { title: string }).title, "compressed");
  });

  it("needs a credential with the chat scope", async () => {
    const before = await stored(alice.userId);
    const anon = await api(t, undefined, "POST", "/api/v1/conversations", { title: "x" });
    assertError(anon, 401, "unauthorized");
    assert.match(anon.headers.get("www-authenticate") ?? "", /^Bearer/);
    assertError(await api(t, "jota_k_not-a-real-key", "GET", "/api/v1/conversations"), 401, "unauthorized");
    const audioOnly = await t.user("dave", ["audio"]);
    assertError(await api(t, audioOnly.key, "GET", "/api/v1/conversations"), 403, "forbidden");
    assertError(await api(t, audioOnly.key, "POST", "/api/v1/conversations", { title: "x" }), 403, "forbidden");
    assert.deepEqual(await stored(alice.userId), before);
    assert.equal((await stored(audioOnly.userId)).conversations.length, 0);
  });
});
