// A turn's request goes through its lifecycle and nowhere else; the turn's
// first write keeps the user's message, its last stores the reply with the
// final state.
import assert from "node:assert/strict";
import { uuidv7 } from "../src/db/ids";
import { InvalidTransitionError } from "../src/db/repositories";
import { describeBackends } from "./helpers/postgres-backends";

describeBackends("request lifecycle", (fx) => {
  async function turn() {
    const db = await fx.openFresh();
    const user = await db.repos.users.create({ username: "u" });
    const conv = await db.repos.conversations.create(user.id);
    const { request, message } = await db.repos.requests.beginTurn(user.id, conv.id, { content: "hola", traceId: "tr" });
    return { db, userId: user.id, conv, request, message };
  }

  it("beginTurn stores the PENDING request and the user's message together", async () => {
    const { db, userId, conv, request, message } = await turn();
    assert.equal(request.status, "PENDING");
    assert.deepEqual([message.role, message.content, message.requestId], ["USER", "hola", request.id]);
    const after = await db.repos.conversations.get(userId, conv.id);
    assert.ok(after.lastMessageAt >= conv.lastMessageAt);
  });

  it("beginTurn of a turn already streaming: its ids, route, engine and the conversation's new affinity in the same write", async () => {
    const db = await fx.openFresh();
    const user = await db.repos.users.create({ username: "u" });
    const conv = await db.repos.conversations.create(user.id);
    const [requestId, messageId] = [uuidv7(), uuidv7()];
    const startedAt = new Date();
    const { request, message } = await db.repos.requests.beginTurn(user.id, conv.id, {
      content: "hola",
      requestId,
      messageId,
      status: "STREAMING",
      route: { route: "CHAT", source: "RULE", detail: "greeting" },
      engine: "e:1",
      startedAt,
      affinity: "e:1",
    });
    assert.deepEqual(
      [request.id, request.status, request.route, request.routeSource, request.routeDetail, request.engine, request.startedAt?.getTime()],
      [requestId, "STREAMING", "CHAT", "RULE", "greeting", "e:1", startedAt.getTime()],
    );
    assert.deepEqual([message.id, message.requestId, message.content], [messageId, requestId, "hola"]);
    // What the driver returned is what Prisma reads back.
    assert.deepEqual(await db.repos.requests.get(user.id, requestId), request);
    const after = await db.repos.conversations.get(user.id, conv.id);
    assert.equal(after.engineAffinity, "e:1");
    assert.ok(after.engineAffinityAt instanceof Date);
    // Another user's conversation: nothing is written.
    const other = await db.repos.users.create({ username: "other" });
    await assert.rejects(db.repos.requests.beginTurn(other.id, conv.id, { content: "x", affinity: "e:2" }), /conversation .* not found/);
    assert.equal((await db.repos.conversations.get(user.id, conv.id)).engineAffinity, "e:1");
    assert.equal((await db.repos.messages.recent(user.id, conv.id, 10)).length, 1);
  });

  it("endTurn stores the token counts measured during the turn, on the user's own messages only", async () => {
    const { db, userId, conv, request, message } = await turn();
    const other = await db.repos.users.create({ username: "other" });
    const otherConv = await db.repos.conversations.create(other.id);
    const foreign = await db.repos.messages.append(other.id, otherConv.id, { role: "USER", content: "ajeno" });
    await db.repos.requests.endTurn(userId, request.id, { status: "COMPLETED", reply: { content: "ok" } }, [
      { id: message.id, tokens: 7 },
      { id: foreign.id, tokens: 99 },
    ]);
    const [user, reply] = await db.repos.messages.recent(userId, conv.id, 10);
    assert.deepEqual([user!.tokens, reply!.content], [7, "ok"]);
    assert.equal((await db.repos.messages.recent(other.id, otherConv.id, 10))[0]!.tokens, null);
  });

  it("ids made in the process are UUIDv7 in creation order", () => {
    const ids = Array.from({ length: 5000 }, () => uuidv7());
    for (const id of ids) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.deepEqual([...ids].sort(), ids);
    assert.equal(new Set(ids).size, ids.length);
  });

  it("endTurn stores the reply and the final state; an aborted turn keeps its partial reply", async () => {
    const { db, userId, conv, request } = await turn();
    await db.repos.requests.transition(userId, request.id, "STREAMING", { engine: "e:1", ttftMs: 12.5 });
    const { request: done, reply } = await db.repos.requests.endTurn(userId, request.id, {
      status: "ABORTED",
      reply: { content: "Hola, qu" },
      finishReason: "cancelled",
    });
    assert.deepEqual([done.status, done.engine, done.ttftMs, done.finishReason], ["ABORTED", "e:1", 12.5, "cancelled"]);
    assert.ok(done.finishedAt);
    assert.deepEqual([reply?.role, reply?.content, reply?.requestId], ["ASSISTANT", "Hola, qu", request.id]);
    const history = await db.repos.messages.recent(userId, conv.id, 10);
    assert.deepEqual(history.map((m) => m.content), ["hola", "Hola, qu"]);
  });

  it("a failed turn records its cause and stores no empty reply", async () => {
    const { db, userId, conv, request } = await turn();
    const { request: failed, reply } = await db.repos.requests.endTurn(userId, request.id, {
      status: "FAILED",
      errorType: "ENGINE_ERROR",
      error: "engine 127.0.0.1:1 went away: UNAVAILABLE",
      reply: { content: "" },
    });
    assert.deepEqual([failed.status, failed.errorType, failed.error], ["FAILED", "ENGINE_ERROR", "engine 127.0.0.1:1 went away: UNAVAILABLE"]);
    assert.equal(reply, undefined);
    assert.deepEqual((await db.repos.messages.recent(userId, conv.id, 10)).map((m) => m.role), ["USER"]);
  });

  it("refuses transitions the lifecycle does not have, and anything after a final state", async () => {
    const { db, userId, request } = await turn();
    await db.repos.requests.transition(userId, request.id, "PROCESSING");
    await assert.rejects(db.repos.requests.transition(userId, request.id, "STREAMING"), InvalidTransitionError);
    await db.repos.requests.endTurn(userId, request.id, { status: "COMPLETED", reply: { content: "ok" } });
    await assert.rejects(
      db.repos.requests.endTurn(userId, request.id, { status: "FAILED" }),
      (e: Error) => e instanceof InvalidTransitionError && /is COMPLETED and cannot become FAILED/.test(e.message),
    );
    await assert.rejects(db.repos.requests.record(userId, request.id, { engine: "x:1" }), InvalidTransitionError);
    // The refused end stored no second reply.
    assert.equal((await db.repos.messages.recent(userId, (await db.repos.requests.get(userId, request.id)).conversationId!, 10)).length, 2);
  });

  it("records the route decision and its source", async () => {
    const { db, userId, request } = await turn();
    await db.repos.requests.setRoute(userId, request.id, { route: "NEEDS_CONTEXT", source: "MODEL", detail: "asks about a document" });
    const r = await db.repos.requests.get(userId, request.id);
    assert.deepEqual([r.route, r.routeSource, r.routeDetail], ["NEEDS_CONTEXT", "MODEL", "asks about a document"]);
  });

  it("pages lists with a cursor: complete, no duplicates, most recently active first", async () => {
    const { db, userId } = await turn();
    for (let i = 0; i < 7; i++) await db.repos.conversations.create(userId, { title: `c${i}` });
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await db.repos.conversations.list(userId, { limit: 3, cursor });
      assert.ok(page.items.length <= 3);
      seen.push(...page.items.map((c) => c.id));
      cursor = page.nextCursor;
    } while (cursor);
    const all = await db.prisma.conversation.findMany({ where: { userId }, orderBy: [{ lastMessageAt: "desc" }, { id: "desc" }] });
    assert.equal(all.length, 8);
    assert.deepEqual(seen, all.map((c) => c.id));
  });
});
