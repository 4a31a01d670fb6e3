// Past the synchronous limit (JOTA_SYNC_LIMIT_MS, 1 ms here) POST /chat
// answers 202 PROCESSING and the turn runs on: it can be polled
// (GET /requests/{id}), streamed as SSE from its first event
// (GET /requests/{id}/events, resumable with Last-Event-ID; from the
// database once the runner no longer holds it; 204 to a client that has the
// last event, so an EventSource stops reconnecting) and aborted
// (POST /requests/{id}/abort). A conversation with a running turn refuses
// another turn and its deletion (409).
import assert from "node:assert/strict";
import { chatRoutes } from "../src/api/chat";
import { FINAL_EVENT_ID, requestRoutes, TurnEventWire } from "../src/api/requests";
import { ErrorBody } from "../src/api/schemas";
import { api, startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";

// These tests make many calls with one key; rate limits have their own tests.
const NO_RATE_LIMIT = { JOTA_RATE_LIMIT: "1000000", JOTA_RATE_BURST: "1000000" };

interface SseEvent {
  /** A sequence number, FINAL_EVENT_ID, or none. */
  id: number | string | undefined;
  event: string;
  data: TurnEventWire;
}

/** Reads a whole SSE response (to its end, or until `until` says stop). */
async function readSse(res: Response, until?: (ev: SseEvent) => boolean): Promise<SseEvent[]> {
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  const out: SseEvent[] = [];
  const decoder = new TextDecoder();
  let buf = "";
  const reader = res.body!.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const fields: Record<string, string> = {};
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // comment (keep-alive)
        const i = line.indexOf(": ");
        fields[line.slice(0, i)] = line.slice(i + 2);
      }
      if (!fields.event) continue;
      const ev = { id: fields.id === undefined ? undefined : /^\d+$/.test(fields.id) ? Number(fields.id) : fields.id, event: fields.event, data: TurnEventWire.parse(JSON.parse(fields.data!)) };
      assert.equal(ev.event, ev.data.type, "event: is the type of data:");
      out.push(ev);
      if (until?.(ev)) {
        await reader.cancel();
        return out;
      }
    }
  }
  assert.equal(buf.trim(), "", "the stream ends on a whole event");
  return out;
}

const text = (evs: SseEvent[]) => evs.map((e) => (e.data.type === "delta" ? e.data.text : "")).join("");

async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("REST POST /api/v1/chat past the synchronous limit, and /requests", function () {
  this.timeout(180_000);
  let t: TestGateway;
  let alice: TestUser;
  let bob: TestUser;

  before(async () => {
    t = await startTestGateway({ slots: 2, ctxSize: 4096, embeddings: false, env: { JOTA_SYNC_LIMIT_MS: "1", ...NO_RATE_LIMIT } });
    alice = await t.user("alice");
    bob = await t.user("bob");
  });
  after(async () => {
    await t?.close();
  });

  const events = (user: TestUser, id: string, headers: Record<string, string> = {}) =>
    fetch(`${t.url}/api/v1/requests/${id}/events`, { headers: { authorization: `Bearer ${user.key}`, ...headers } });

  const final = (user: TestUser, id: string) =>
    waitFor(`request ${id} to end`, 90_000, async () => {
      const r = await api(t, user.key, "GET", `/api/v1/requests/${id}`);
      assert.equal(r.status, 200);
      return ["COMPLETED", "FAILED", "ABORTED"].includes(r.json.status) ? requestRoutes.get.responses[200].schema.parse(r.json) : undefined;
    });

  /**
   * Follows the stream as an EventSource does: after each end it reconnects with the last id it saw (an event
   * without one leaves it as it was), until a 204 or `max` connections.
   */
  async function followLikeEventSource(user: TestUser, id: string, lastId?: string, max = 4) {
    const got: SseEvent[] = [];
    for (let connections = 1; connections <= max; connections++) {
      const res = await events(user, id, lastId === undefined ? {} : { "last-event-id": lastId });
      if (res.status === 204) {
        assert.equal(await res.text(), "");
        return { got, connections, stopped: true };
      }
      assert.equal(res.status, 200);
      for (const ev of await readSse(res)) {
        got.push(ev);
        if (ev.id !== undefined) lastId = String(ev.id);
      }
    }
    return { got, connections: max, stopped: false };
  }

  /** Starts a turn long enough to act on while it runs (it fills the context unless aborted). */
  async function longTurn(user: TestUser, conversationId?: string) {
    const r = await api(t, user.key, "POST", "/api/v1/chat", { content: "Talk without stopping", conversation_id: conversationId, options: { max_tokens: 4000 } });
    assert.equal(r.status, 202, r.text);
    const p = chatRoutes.chat.responses[202].schema.parse(r.json);
    // Streaming has begun once a delta arrives.
    await readSse(await events(user, p.request_id), (ev) => ev.data.type === "delta");
    return p;
  }

  it("answers 202 PROCESSING with where to poll; polling ends COMPLETED; the SSE replay's tokens are the stored reply", async () => {
    const r = await api(t, alice.key, "POST", "/api/v1/chat", { content: "Count to ten", options: { max_tokens: 300 } });
    assert.equal(r.status, 202, r.text);
    const p = chatRoutes.chat.responses[202].schema.parse(r.json);
    assert.equal(p.status, "PROCESSING");
    assert.equal(r.headers.get("location"), `/api/v1/requests/${p.request_id}`);
    assert.deepEqual(p.links, {
      self: `/api/v1/requests/${p.request_id}`,
      events: `/api/v1/requests/${p.request_id}/events`,
      abort: `/api/v1/requests/${p.request_id}/abort`,
    });
    const now = await api(t, alice.key, "GET", p.links.self);
    // Recorded PROCESSING before the 202 went out (nobody waits for it), unless it already ended.
    if (now.json.status !== "COMPLETED") assert.equal(now.json.status, "PROCESSING");

    const done = await final(alice, p.request_id);
    assert.equal(done.status, "COMPLETED");
    assert.equal(done.conversation_id, p.conversation_id);
    assert.ok(done.reply && done.reply.content.length > 0);

    const evs = await readSse(await events(alice, p.request_id));
    assert.deepEqual(evs.map((e) => e.id), evs.map((_, i) => i), "ids are the sequence numbers");
    assert.equal(evs[0]!.data.type, "accepted");
    assert.equal(evs[1]!.data.type, "started");
    const last = evs[evs.length - 1]!.data;
    assert.ok(last.type === "done");
    assert.ok(evs.slice(2, -1).every((e) => e.data.type === "delta"));
    assert.equal(text(evs), done.reply!.content, "the deltas are the stored reply");
    assert.equal(last.text, done.reply!.content);
    assert.equal(last.reply_message_id, done.reply!.message_id);
    assert.equal(last.usage.completion_tokens, done.usage.completion_tokens);
    const stored = await t.stack.db.repos.messages.ofRequest(alice.userId, p.request_id);
    assert.deepEqual(stored.map((m) => [m.role, m.content]), [["USER", "Count to ten"], ["ASSISTANT", text(evs)]]);

    // Reconnecting with Last-Event-ID gets exactly the events after it.
    const k = 3;
    const rest = await readSse(await events(alice, p.request_id, { "last-event-id": String(k) }));
    assert.deepEqual(rest, evs.slice(k + 1));
    const bad = await events(alice, p.request_id, { "last-event-id": "three" });
    assert.equal(bad.status, 400);
    assert.equal(ErrorBody.parse(await bad.json()).error.details.field, "last-event-id");
  });

  it("streams a running turn live from its first event to its end", async () => {
    const r = await api(t, alice.key, "POST", "/api/v1/chat", { content: "Say a lot", options: { max_tokens: 400 } });
    assert.equal(r.status, 202);
    const evs = await readSse(await events(alice, r.json.request_id));
    const last = evs[evs.length - 1]!.data;
    assert.ok(last.type === "done" && last.status === "COMPLETED");
    const done = await final(alice, r.json.request_id);
    assert.equal(text(evs), done.reply!.content);
    assert.ok(evs.some((e) => e.data.type === "delta"));
  });

  it("aborts a running turn: ABORTED with the partial reply stored; a second abort is a 409", async () => {
    const p = await longTurn(alice);
    assertStatus(await api(t, bob.key, "POST", `/api/v1/requests/${p.request_id}/abort`), 404);
    const ab = await api(t, alice.key, "POST", `/api/v1/requests/${p.request_id}/abort`);
    assert.equal(ab.status, 202, ab.text);
    assert.deepEqual(requestRoutes.abort.responses[202].schema.parse(ab.json), { request_id: p.request_id, status: "PROCESSING" });
    const done = await final(alice, p.request_id);
    assert.equal(done.status, "ABORTED");
    assert.equal(done.finish_reason, "cancelled");
    assert.ok(done.reply && done.reply.content.length > 0, "the partial reply is kept");
    assert.ok(done.usage.completion_tokens! < 4000);
    const evs = await readSse(await events(alice, p.request_id));
    const last = evs[evs.length - 1]!.data;
    assert.ok(last.type === "done" && last.status === "ABORTED");
    assert.equal(text(evs), done.reply!.content);
    const again = await api(t, alice.key, "POST", `/api/v1/requests/${p.request_id}/abort`);
    assertStatus(again, 409);
    assert.deepEqual(again.json.error.details, { request_id: p.request_id, status: "ABORTED" });
  });

  it("a conversation with a running turn refuses another turn and its deletion (409), then deletes once it ended", async () => {
    const p = await longTurn(alice);
    const before = await t.stack.db.repos.messages.list(alice.userId, p.conversation_id);
    const busy = await api(t, alice.key, "POST", "/api/v1/chat", { conversation_id: p.conversation_id, content: "me too" });
    assertStatus(busy, 409);
    assert.equal(busy.json.error.code, "conversation_busy");
    const del = await api(t, alice.key, "DELETE", `/api/v1/conversations/${p.conversation_id}`);
    assertStatus(del, 409);
    assert.equal(del.json.error.code, "conversation_busy");
    assert.equal(del.json.error.details.request_id, p.request_id);
    assert.deepEqual(await t.stack.db.repos.messages.list(alice.userId, p.conversation_id), before, "nothing added or removed");

    assert.equal((await api(t, alice.key, "POST", `/api/v1/requests/${p.request_id}/abort`)).status, 202);
    await final(alice, p.request_id);
    assert.equal((await api(t, alice.key, "DELETE", `/api/v1/conversations/${p.conversation_id}`)).status, 204);
    assertStatus(await api(t, alice.key, "GET", `/api/v1/requests/${p.request_id}`), 404);
    assert.equal(await t.stack.db.prisma.message.count({ where: { conversationId: p.conversation_id } }), 0);
  });

  it("a client that has the last event gets 204, whether the runner holds the turn or let it go; the final event from the database has a stable id", async () => {
    const r = await api(t, alice.key, "POST", "/api/v1/chat", { content: "Name three colours", options: { max_tokens: 40 } });
    assert.equal(r.status, 202, r.text);
    const id: string = r.json.request_id;
    const done = await final(alice, id);
    assert.equal(done.status, "COMPLETED");

    // Held by the runner: the whole live stream once, then 204 (an EventSource stops there).
    const live = await followLikeEventSource(alice, id);
    assert.equal(live.stopped, true, `stopped after ${live.connections} connections`);
    assert.equal(live.connections, 2);
    const lastLive = live.got.length - 1;
    assert.deepEqual(live.got.map((e) => e.id), live.got.map((_, i) => i), "live ids are the sequence numbers");
    assert.equal(live.got[lastLive]!.data.type, "done");
    assert.equal((await events(alice, id, { "last-event-id": String(lastLive + 5) })).status, 204, "past the last is nothing more too");
    const tail = await readSse(await events(alice, id, { "last-event-id": String(lastLive - 1) }));
    assert.deepEqual(tail, live.got.slice(-1), "an earlier id still gets the rest");

    // The runner lets the turn go (its keep time is over): from now on the stream is built from the database.
    const handle = t.stack.runner.find(alice.userId, id)!;
    handle.finishedAt = 0;
    (t.stack.runner as unknown as { sweep(): void }).sweep();
    assert.equal(t.stack.runner.find(alice.userId, id), undefined);

    const fresh = await followLikeEventSource(alice, id);
    assert.equal(fresh.stopped, true, `an EventSource is stopped, not fed the final event ${fresh.got.length} times`);
    assert.deepEqual(fresh.got.map((e) => [e.id, e.data.type]), [[FINAL_EVENT_ID, "done"]], "the final event once, with its stable id");
    const ev = fresh.got[0]!.data;
    assert.ok(ev.type === "done");
    assert.equal(ev.text, done.reply!.content, "the whole reply");
    assert.equal(ev.reply_message_id, done.reply!.message_id);

    // A client that followed the live stream to its end: the final event once more (nothing says it had it), then 204.
    const resumed = await followLikeEventSource(alice, id, String(lastLive));
    assert.equal(resumed.stopped, true);
    assert.deepEqual(resumed.got.map((e) => [e.id, e.data]), [[FINAL_EVENT_ID, ev]]);
    assert.equal((await events(alice, id, { "last-event-id": FINAL_EVENT_ID })).status, 204);
    // Another user's request is still not found, whatever the Last-Event-ID.
    assertStatus(await api(t, bob.key, "GET", `/api/v1/requests/${id}/events`, undefined, { "last-event-id": FINAL_EVENT_ID }), 404);
  });

  it("a turn the runner holds that ended without its result event is not a 204: the client gets the outcome from the database", async () => {
    const r = await api(t, alice.key, "POST", "/api/v1/chat", { content: "Name two rivers", options: { max_tokens: 20 } });
    assert.equal(r.status, 202, r.text);
    const id: string = r.json.request_id;
    const done = await final(alice, id);
    const handle = t.stack.runner.find(alice.userId, id)!;
    await handle.result;
    // What a turn that threw after some events leaves (TurnHandle.pump ends without done or error): the log
    // without its result. Simulated by taking the result out, since no part here fails that way on request.
    const log = (handle as unknown as { log: unknown[] }).log;
    log.pop();
    assert.equal(handle.hasResult, false);
    const res = await events(alice, id, { "last-event-id": String(log.length - 1) });
    assert.equal(res.status, 200, "the client has every logged event, but not how the turn ended");
    const got = await readSse(res);
    assert.deepEqual(got.map((e) => [e.id, e.data.type]), [[FINAL_EVENT_ID, "done"]]);
    assert.ok(got[0]!.data.type === "done" && got[0]!.data.text === done.reply!.content);
    // Its last write lost too (the row left STREAMING): not a 409 "poll", since polling would never see it end.
    await t.stack.db.prisma.request.update({ where: { id }, data: { status: "STREAMING", finishedAt: null } });
    const lost = await api(t, alice.key, "GET", `/api/v1/requests/${id}/events`);
    assert.equal(lost.status, 500, lost.text);
    assert.equal(lost.json.error.code, "internal_error");
    assert.deepEqual(lost.json.error.details, { request_id: id, status: "STREAMING" });
    assert.match(lost.json.error.message, /ended without its outcome being recorded/);
  });

  it("a request the runner does not hold (e.g. from before a restart) streams one final event from the database; one still in flight is a 409", async () => {
    const repos = t.stack.db.repos;
    const conv = await repos.conversations.create(alice.userId, { title: "old" });
    const { request, message } = await repos.requests.beginTurn(alice.userId, conv.id, { content: "hello from yesterday" });
    await repos.requests.endTurn(alice.userId, request.id, { status: "COMPLETED", reply: { content: "stored answer" }, finishReason: "stop", completionTokens: 2 });
    const evs = await readSse(await events(alice, request.id));
    assert.equal(evs.length, 1);
    assert.equal(evs[0]!.id, FINAL_EVENT_ID, "not part of a live sequence: the id of a final event from the database");
    const ev = evs[0]!.data;
    assert.ok(ev.type === "done");
    assert.equal(ev.status, "COMPLETED");
    assert.equal(ev.text, "stored answer");
    assert.equal(ev.usage.completion_tokens, 2);

    const failed = await repos.requests.beginTurn(alice.userId, conv.id, { content: "and this" });
    await repos.requests.endTurn(alice.userId, failed.request.id, { status: "FAILED", errorType: "ENGINE_ERROR", error: "engine went away" });
    const fe = (await readSse(await events(alice, failed.request.id)))[0]!.data;
    assert.deepEqual(fe, {
      type: "error",
      request_id: failed.request.id,
      status: "FAILED",
      error_type: "ENGINE_ERROR",
      message: "engine went away",
      user_message_id: failed.message.id,
    });
    assert.ok(message.id);

    // In flight in the database but not running here: neither streamable nor abortable from this server.
    const orphan = await repos.requests.beginTurn(alice.userId, (await repos.conversations.create(alice.userId)).id, { content: "lost" });
    for (const r of [await api(t, alice.key, "GET", `/api/v1/requests/${orphan.request.id}/events`), await api(t, alice.key, "POST", `/api/v1/requests/${orphan.request.id}/abort`)]) {
      assertStatus(r, 409);
      assert.equal(r.json.error.details.status, "PENDING");
    }

    // The list shows them, newest first, filtered by conversation.
    const list = await api(t, alice.key, "GET", `/api/v1/requests?conversation_id=${conv.id}`);
    assert.equal(list.status, 200);
    const page = requestRoutes.list.responses[200].schema.parse(list.json);
    assert.deepEqual(page.items.map((x) => [x.request_id, x.status]), [
      [failed.request.id, "FAILED"],
      [request.id, "COMPLETED"],
    ]);
    assert.equal(page.items[1]!.reply!.content, "stored answer");
    assert.deepEqual(page.items[0]!.error, { type: "ENGINE_ERROR", message: "engine went away" });
  });
});

function assertStatus(r: { status: number; json: unknown }, status: number) {
  assert.equal(r.status, status, JSON.stringify(r.json));
  ErrorBody.parse(r.json);
}
