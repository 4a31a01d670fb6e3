// POST /api/v1/chat within the synchronous limit (api/chat.ts): the answer
// is the stored request and reply; the conversation's messages are what was
// said; bad input is a precise 400/404/415 that stores nothing; a client
// that hangs up leaves the turn running to its end (PROCESSING, then
// COMPLETED).
import assert from "node:assert/strict";
import { chatRoutes } from "../src/api/chat";
import { conversationRoutes } from "../src/api/conversations";
import { requestRoutes } from "../src/api/requests";
import { ErrorBody } from "../src/api/schemas";
import { api, startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";

// These tests make many calls with one key; rate limits have their own tests.
const NO_RATE_LIMIT = { JOTA_RATE_LIMIT: "1000000", JOTA_RATE_BURST: "1000000" };

async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("REST POST /api/v1/chat (synchronous)", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let alice: TestUser;
  let bob: TestUser;

  before(async () => {
    t = await startTestGateway({ slots: 2, embeddings: false, env: NO_RATE_LIMIT });
    alice = await t.user("alice");
    bob = await t.user("bob");
  });
  after(async () => {
    await t?.close();
  });

  async function stored(userId: string) {
    const prisma = t.stack.db.prisma;
    const [conversations, messages, requests] = await Promise.all([
      prisma.conversation.findMany({ where: { userId }, orderBy: { id: "asc" } }),
      prisma.message.findMany({ where: { userId }, orderBy: { id: "asc" } }),
      prisma.request.findMany({ where: { userId }, orderBy: { id: "asc" } }),
    ]);
    return { conversations, messages, requests };
  }

  function assertError(r: { status: number; json: unknown }, status: number, code: string) {
    assert.equal(r.status, status, JSON.stringify(r.json));
    const e = ErrorBody.parse(r.json);
    assert.equal(e.error.code, code);
    return e.error;
  }

  it("answers 200 with the stored request; the conversation holds the user's message and exactly that reply", async () => {
    const res = await api(t, alice.key, "POST", "/api/v1/chat", { content: "What is the capital of France?", options: { max_tokens: 12 } });
    assert.equal(res.status, 200, res.text);
    const v = chatRoutes.chat.responses[200].schema.parse(res.json);
    assert.equal(v.status, "COMPLETED");
    assert.ok(v.conversation_id);
    assert.ok(v.reply && v.reply.content.length > 0, "a reply");
    assert.ok(["stop", "length"].includes(v.finish_reason!));
    assert.ok(v.usage.completion_tokens! >= 1 && v.usage.completion_tokens! <= 12);
    assert.ok(v.usage.prompt_tokens! > 0);
    assert.equal(v.route.route, "chat");
    assert.ok(v.route.source && v.route.detail, "the router's decision and its reason are recorded");
    assert.equal(v.error, null);
    assert.equal(v.trace_id, res.headers.get("x-request-id"), "the HTTP request id is the turn's trace id");
    assert.ok(v.finished_at && v.started_at && v.finished_at >= v.started_at);

    // A new conversation, titled after what was said.
    const conv = conversationRoutes.get.responses[200].schema.parse((await api(t, alice.key, "GET", `/api/v1/conversations/${v.conversation_id}`)).json);
    assert.equal(conv.title, "What is the capital of France?");
    const msgs = conversationRoutes.messages.responses[200].schema.parse((await api(t, alice.key, "GET", `/api/v1/conversations/${v.conversation_id}/messages`)).json);
    assert.deepEqual(
      msgs.items.map((m) => [m.role, m.content, m.request_id]),
      [
        ["user", "What is the capital of France?", v.request_id],
        ["assistant", v.reply!.content, v.request_id],
      ],
    );
    assert.equal(msgs.items[1]!.id, v.reply!.message_id);
    assert.equal(msgs.next_cursor, null);

    // The request, read back, is what the chat call answered.
    const again = await api(t, alice.key, "GET", `/api/v1/requests/${v.request_id}`);
    assert.equal(again.status, 200);
    assert.deepEqual(requestRoutes.get.responses[200].schema.parse(again.json), v);
  });

  it("continues a conversation; its messages page oldest first", async () => {
    const first = (await api(t, alice.key, "POST", "/api/v1/chat", { content: "uno", title: "Counting", options: { max_tokens: 4 } })).json;
    assert.equal(first.status, "COMPLETED");
    const convId = first.conversation_id;
    assert.equal((await api(t, alice.key, "GET", `/api/v1/conversations/${convId}`)).json.title, "Counting");
    const second = await api(t, alice.key, "POST", "/api/v1/chat", { conversation_id: convId, content: "dos", options: { max_tokens: 4, temperature: 0 } });
    assert.equal(second.status, 200, second.text);
    assert.equal(second.json.conversation_id, convId);
    // The second turn's prompt held the first exchange: more prompt tokens than the first.
    assert.ok(second.json.usage.prompt_tokens > first.usage.prompt_tokens);

    const all: { role: string; content: string }[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const r = await api(t, alice.key, "GET", `/api/v1/conversations/${convId}/messages?limit=3${cursor ? `&cursor=${cursor}` : ""}`);
      const page = conversationRoutes.messages.responses[200].schema.parse(r.json);
      sizes.push(page.items.length);
      all.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual(sizes, [3, 1]);
    assert.deepEqual(
      all.map((m) => [m.role, m.content]),
      [
        ["user", "uno"],
        ["assistant", first.reply.content],
        ["user", "dos"],
        ["assistant", second.json.reply.content],
      ],
    );
  });

  it("passes max_tokens and stop to the engine", async () => {
    const r = await api(t, alice.key, "POST", "/api/v1/chat", { content: "Tell me a long story", options: { max_tokens: 3 } });
    assert.equal(r.status, 200);
    assert.equal(r.json.usage.completion_tokens, 3);
    assert.equal(r.json.finish_reason, "length");

    // Greedy decoding repeats itself: the same question again with a stop string taken from the first reply ends right before it.
    const full = (await api(t, alice.key, "POST", "/api/v1/chat", { content: "Name three colours", options: { max_tokens: 24, temperature: 0 } })).json;
    const reply: string = full.reply.content;
    assert.ok(reply.length >= 12, `a reply long enough to cut (${JSON.stringify(reply)})`);
    const stop = reply.slice(8, 12);
    const cut = (await api(t, alice.key, "POST", "/api/v1/chat", { content: "Name three colours", options: { max_tokens: 24, temperature: 0, stop: [stop] } })).json;
    assert.equal(cut.finish_reason, "stop");
    assert.equal(cut.reply.content, reply.slice(0, reply.indexOf(stop)));
  });

  it("refuses bad bodies with the field named, and stores nothing", async () => {
    const conv = (await api(t, alice.key, "POST", "/api/v1/conversations", { title: "target" })).json;
    const before = await stored(alice.userId);
    const cases: [unknown, string][] = [
      [{}, "content"],
      [{ content: "" }, "content"],
      [{ content: " \n\t" }, "content"],
      [{ content: 5 }, "content"],
      [{ content: ["hi"] }, "content"],
      [{ content: "hi", stream: true }, "stream"],
      [{ content: "hi", conversation_id: "abc" }, "conversation_id"],
      [{ content: "hi", conversation_id: conv.id, title: "again" }, "title"],
      [{ content: "hi", options: { max_tokens: 0 } }, "options.max_tokens"],
      [{ content: "hi", options: { max_tokens: 1.5 } }, "options.max_tokens"],
      [{ content: "hi", options: { temperature: "hot" } }, "options.temperature"],
      [{ content: "hi", options: { stop: "x" } }, "options.stop"],
      [{ content: "hi", options: { top_p: 2 } }, "options.top_p"],
      [{ content: "hi", options: { n: 2 } }, "options.n"],
      [{ content: "hi", options: null }, "options"],
      [[{ content: "hi" }], "body"],
    ];
    for (const [body, field] of cases) {
      const e = assertError(await api(t, alice.key, "POST", "/api/v1/chat", body), 400, "validation_error");
      assert.equal(e.details.field, field, JSON.stringify(body));
    }
    assertError(await api(t, alice.key, "POST", "/api/v1/chat", '{"content": "hi",}', { "content-type": "application/json" }), 400, "invalid_json");
    assertError(await api(t, alice.key, "POST", "/api/v1/chat", "content=hi", { "content-type": "application/x-www-form-urlencoded" }), 415, "unsupported_media_type");
    // Invalid UTF-8 inside a JSON string would be stored mangled: refused.
    const bad = await fetch(`${t.url}/api/v1/chat`, {
      method: "POST",
      headers: { authorization: `Bearer ${alice.key}`, "content-type": "application/json" },
      body: Buffer.concat([Buffer.from('{"content":"'), Buffer.from([0xff]), Buffer.from('"}')]),
    });
    assertError({ status: bad.status, json: await bad.json() }, 400, "validation_error");
    assert.deepEqual(await stored(alice.userId), before);
  });

  it("limits stop strings in UTF-8 bytes, as the engine does: 258 bytes is a 400 naming the string, storing nothing; 256 bytes runs", async () => {
    const before = await stored(alice.userId);
    // 129 characters, 258 bytes: within a limit counted in characters, beyond the engine's.
    for (const [stop, field] of [
      [["fin", "é".repeat(129)], "options.stop.1"],
      [["x".repeat(257)], "options.stop.0"],
    ] as const) {
      const e = assertError(await api(t, alice.key, "POST", "/api/v1/chat", { content: "hi", options: { stop } }), 400, "validation_error");
      assert.equal(e.details.field, field, JSON.stringify(e));
      assert.match(e.message, /256 bytes/);
    }
    assert.deepEqual(await stored(alice.userId), before);

    const ok = await api(t, alice.key, "POST", "/api/v1/chat", { content: "hi", options: { max_tokens: 2, stop: ["é".repeat(128), "x".repeat(256)] } });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.status, "COMPLETED");
  });

  it("another user's conversation is not found and nothing is stored for either", async () => {
    const conv = (await api(t, alice.key, "POST", "/api/v1/conversations", { title: "alice only" })).json;
    const [a0, b0] = await Promise.all([stored(alice.userId), stored(bob.userId)]);
    const r = await api(t, bob.key, "POST", "/api/v1/chat", { conversation_id: conv.id, content: "let me in" });
    const e = assertError(r, 404, "not_found");
    assert.equal(e.details.conversation, conv.id);
    assertError(await api(t, alice.key, "POST", "/api/v1/chat", { conversation_id: "0193a0c0-0000-7000-8000-000000000000", content: "hi" }), 404, "not_found");
    assert.deepEqual(await Promise.all([stored(alice.userId), stored(bob.userId)]), [a0, b0]);
  });

  it("another user's request is not found (get, events, abort)", async () => {
    const v = (await api(t, alice.key, "POST", "/api/v1/chat", { content: "mine", options: { max_tokens: 2 } })).json;
    assertError(await api(t, bob.key, "GET", `/api/v1/requests/${v.request_id}`), 404, "not_found");
    assertError(await api(t, bob.key, "GET", `/api/v1/requests/${v.request_id}/events`), 404, "not_found");
    assertError(await api(t, bob.key, "POST", `/api/v1/requests/${v.request_id}/abort`), 404, "not_found");
    const list = await api(t, bob.key, "GET", "/api/v1/requests");
    assert.ok(list.json.items.every((x: { request_id: string }) => x.request_id !== v.request_id));
    assert.equal((await api(t, alice.key, "GET", `/api/v1/requests/${v.request_id}`)).json.status, "COMPLETED");
  });

  it("a client that hangs up leaves the turn running: PROCESSING, then COMPLETED with the reply stored", async () => {
    const conv = (await api(t, alice.key, "POST", "/api/v1/conversations", { title: "hang up" })).json;
    const ac = new AbortController();
    const call = fetch(`${t.url}/api/v1/chat`, {
      method: "POST",
      headers: { authorization: `Bearer ${alice.key}`, "content-type": "application/json" },
      body: JSON.stringify({ conversation_id: conv.id, content: "Talk for a long while", options: { max_tokens: 300 } }),
      signal: ac.signal,
    }).catch((err: Error) => err);
    const requestId = await waitFor("the turn to stream", 20_000, async () => {
      const r = await t.stack.db.repos.requests.list(alice.userId, { conversationId: conv.id });
      return r.items[0]?.status === "STREAMING" ? r.items[0].id : undefined;
    });
    ac.abort();
    assert.ok((await call) instanceof Error, "the fetch was cut");
    const mid = await waitFor("PROCESSING", 10_000, async () => {
      const r = await api(t, alice.key, "GET", `/api/v1/requests/${requestId}`);
      return r.json.status !== "STREAMING" ? r.json : undefined;
    });
    assert.equal(mid.status, "PROCESSING", "nobody waits for it now, and it runs on");
    const done = await waitFor("the end of the turn", 60_000, async () => {
      const r = await api(t, alice.key, "GET", `/api/v1/requests/${requestId}`);
      return ["COMPLETED", "FAILED", "ABORTED"].includes(r.json.status) ? r.json : undefined;
    });
    assert.equal(done.status, "COMPLETED", "a hang-up does not abort the turn");
    const msgs = (await api(t, alice.key, "GET", `/api/v1/conversations/${conv.id}/messages`)).json.items;
    assert.deepEqual(msgs.map((m: { role: string }) => m.role), ["user", "assistant"]);
    assert.equal(msgs[1].content, done.reply.content);
  });
});
