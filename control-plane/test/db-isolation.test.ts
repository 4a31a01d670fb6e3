// Per-user isolation: every repository method that touches user data, called
// by another user with the owner's ids, finds nothing and changes nothing.
import assert from "node:assert/strict";
import { NotFoundError, type Repositories } from "../src/db/repositories";
import { describeBackends } from "./helpers/postgres-backends";

interface Owned {
  userId: string;
  conversationId: string;
  messageId: string;
  requestId: string;
  toolCallId: string;
  apiKeyId: string;
  deviceId: string;
  deviceTokenId: string;
  documentId: string;
  memoryId: string;
}

async function seed(repos: Repositories, username: string): Promise<Owned> {
  const user = await repos.users.create({ username });
  const conv = await repos.conversations.create(user.id, { title: `${username}'s` });
  const { request, message } = await repos.requests.beginTurn(user.id, conv.id, { content: `secret of ${username}` });
  const call = await repos.toolCalls.create(user.id, request.id, { name: "t", arguments: {} });
  const { key } = await repos.apiKeys.create(user.id, { name: "k", scopes: [] });
  const device = await repos.devices.create(user.id, { name: "kitchen" });
  const { token } = await repos.devices.issueToken(user.id, device.id);
  const doc = await repos.documents.queue(user.id, { source: "notes.md", mediaType: "text/markdown", bytes: 10, jobId: "job-1" });
  // The turn cited the document (what eraseSource erases).
  await repos.requests.record(user.id, request.id, { sources: [{ id: "notes.md#0", source: "notes.md", kind: "document", text: `secret of ${username}`, score: 1 }] });
  const memory = await repos.memories.create(user.id, { text: `secret fact of ${username}` });
  return {
    userId: user.id,
    conversationId: conv.id,
    messageId: message.id,
    requestId: request.id,
    toolCallId: call.id,
    apiKeyId: key.id,
    deviceId: device.id,
    deviceTokenId: token.id,
    documentId: doc.id,
    memoryId: memory.id,
  };
}

type Outcome = "not found" | "empty";
/** Every user-scoped method: `intruder` acting on `victim`'s rows. */
const CASES: Record<string, Record<string, [Outcome, (r: Repositories, intruder: string, v: Owned) => Promise<unknown>]>> = {
  conversations: {
    create: ["empty", async (r, i) => (await r.conversations.list(i)).items.filter((c) => c.title?.includes("victim"))],
    get: ["not found", (r, i, v) => r.conversations.get(i, v.conversationId)],
    forTurn: ["not found", (r, i, v) => r.conversations.forTurn(i, v.conversationId, 10)],
    list: ["empty", async (r, i) => (await r.conversations.list(i)).items.filter((c) => c.userId !== i)],
    rename: ["not found", (r, i, v) => r.conversations.rename(i, v.conversationId, "mine")],
    setAffinity: ["not found", (r, i, v) => r.conversations.setAffinity(i, v.conversationId, "x:1")],
    setSummary: ["not found", (r, i, v) => r.conversations.setSummary(i, v.conversationId, "s", v.messageId)],
    replaceSummary: ["empty", async (r, i, v) => ((await r.conversations.replaceSummary(i, v.conversationId, null, "s", v.messageId)) ? ["replaced"] : [])],
    advanceMemories: ["empty", async (r, i, v) => ((await r.conversations.advanceMemories(i, v.conversationId, null, v.messageId)) ? ["advanced"] : [])],
    claimByDigest: [
      "empty",
      async (r, i, v) => {
        await r.conversations.setDigest(v.userId, v.conversationId, "victim-digest", null);
        return (await r.conversations.claimByDigest(i, "victim-digest")) ? ["claimed"] : [];
      },
    ],
    setDigest: [
      "empty",
      async (r, i, v) => {
        const current = (await r.conversations.get(v.userId, v.conversationId)).historyDigest;
        return (await r.conversations.setDigest(i, v.conversationId, "injected", current)) ? ["set"] : [];
      },
    ],
    delete: ["not found", (r, i, v) => r.conversations.delete(i, v.conversationId)],
  },
  messages: {
    append: ["not found", (r, i, v) => r.messages.append(i, v.conversationId, { role: "USER", content: "injected" })],
    get: ["not found", (r, i, v) => r.messages.get(i, v.messageId)],
    list: ["empty", async (r, i, v) => (await r.messages.list(i, v.conversationId)).items],
    recent: ["empty", (r, i, v) => r.messages.recent(i, v.conversationId, 10)],
    after: ["empty", (r, i, v) => r.messages.after(i, v.conversationId, null, 10)],
    setTokens: ["not found", (r, i, v) => r.messages.setTokens(i, v.messageId, 1)],
    ofRequest: ["empty", (r, i, v) => r.messages.ofRequest(i, v.requestId)],
    ofRequests: ["empty", (r, i, v) => r.messages.ofRequests(i, [v.requestId])],
  },
  requests: {
    beginTurn: ["not found", (r, i, v) => r.requests.beginTurn(i, v.conversationId, { content: "injected" })],
    endTurn: ["not found", (r, i, v) => r.requests.endTurn(i, v.requestId, { status: "COMPLETED", reply: { content: "injected" } })],
    transition: ["not found", (r, i, v) => r.requests.transition(i, v.requestId, "STREAMING")],
    record: ["not found", (r, i, v) => r.requests.record(i, v.requestId, { engine: "x:1" })],
    setRoute: ["not found", (r, i, v) => r.requests.setRoute(i, v.requestId, { route: "CHAT", source: "RULE" })],
    get: ["not found", (r, i, v) => r.requests.get(i, v.requestId)],
    list: ["empty", async (r, i, v) => (await r.requests.list(i, { conversationId: v.conversationId })).items],
    // The intruder's own turn cites a source of the same name: only theirs may be erased.
    eraseSource: [
      "empty",
      async (r, i, v) => {
        await r.requests.eraseSource(i, "notes.md");
        const victim = (await r.requests.get(v.userId, v.requestId)).sources as { text: string }[];
        return victim[0]!.text === "secret of victim" ? [] : ["the victim's citation was erased"];
      },
    ],
  },
  toolCalls: {
    create: ["not found", (r, i, v) => r.toolCalls.create(i, v.requestId, { name: "t", arguments: {} })],
    start: ["not found", (r, i, v) => r.toolCalls.start(i, v.toolCallId)],
    succeed: ["not found", (r, i, v) => r.toolCalls.succeed(i, v.toolCallId, {})],
    fail: ["not found", (r, i, v) => r.toolCalls.fail(i, v.toolCallId, "x")],
    listByRequest: ["empty", (r, i, v) => r.toolCalls.listByRequest(i, v.requestId)],
  },
  apiKeys: {
    create: ["empty", async (r, i) => (await r.apiKeys.list(i)).items.filter((k) => k.userId !== i)],
    list: ["empty", async (r, i) => (await r.apiKeys.list(i)).items.filter((k) => k.userId !== i)],
    revoke: ["not found", (r, i, v) => r.apiKeys.revoke(i, v.apiKeyId)],
  },
  devices: {
    create: ["empty", async (r, i) => (await r.devices.list(i)).items.filter((d) => d.userId !== i)],
    get: ["not found", (r, i, v) => r.devices.get(i, v.deviceId)],
    list: ["empty", async (r, i) => (await r.devices.list(i)).items.filter((d) => d.userId !== i)],
    revoke: ["not found", (r, i, v) => r.devices.revoke(i, v.deviceId)],
    issueToken: ["not found", (r, i, v) => r.devices.issueToken(i, v.deviceId)],
    listTokens: ["empty", (r, i, v) => r.devices.listTokens(i, v.deviceId)],
    revokeToken: ["not found", (r, i, v) => r.devices.revokeToken(i, v.deviceTokenId)],
  },
  documents: {
    queue: ["empty", async (r, i) => (await r.documents.list(i)).items.filter((d) => d.userId !== i)],
    // The intruder's own row has the same source and job id: only the victim's must stay untouched.
    ready: ["empty", async (r, i) => ((await r.documents.ready(i, "notes.md", "job-1", 3, "c", "job-1")) ? [] : ["intruder's own row not found"])],
    failed: ["empty", async (r, i) => ((await r.documents.failed(i, "notes.md", "job-1", "x")) ? [] : ["intruder's own row not found"])],
    chunksIn: [
      "empty",
      async (r, i) => {
        await r.documents.chunksIn(i, "notes.md", "c2");
        return [];
      },
    ],
    // The intruder's own row of that source may move; the victim's must not.
    movedTo: [
      "empty",
      async (r, i) => {
        await r.documents.movedTo(i, "notes.md", "c", "c3");
        return [];
      },
    ],
    // A source only the victim has, READY: the intruder learns nothing of its current version.
    chunksVersions: [
      "empty",
      async (r, i, v) => {
        await r.documents.queue(v.userId, { source: "victim-chunks.md", mediaType: "text/markdown", bytes: 10, jobId: "job-v" });
        await r.documents.ready(v.userId, "victim-chunks.md", "job-v", 1, "c", "job-v");
        return [...(await r.documents.chunksVersions(i, ["victim-chunks.md", "notes.md"])).entries()].filter(([source]) => source === "victim-chunks.md");
      },
    ],
    get: ["not found", (r, i, v) => r.documents.get(i, v.documentId)],
    bySource: ["empty", async (r, i) => ((await r.documents.bySource(i, "notes.md"))?.userId === i ? [] : ["another user's row"])],
    list: ["empty", async (r, i) => (await r.documents.list(i)).items.filter((d) => d.userId !== i)],
    delete: ["not found", (r, i, v) => r.documents.delete(i, v.documentId)],
    // The intruder's note of a deletion is theirs: it never names the victim's source as deleted.
    noteErased: [
      "empty",
      async (r, i, v) => {
        await r.documents.noteErased(i, "notes.md");
        return r.documents.erasedSince(v.userId, ["notes.md"], new Date(0));
      },
    ],
    erasedSince: [
      "empty",
      async (r, i, v) => {
        await r.documents.noteErased(v.userId, "victim-only.md");
        return r.documents.erasedSince(i, ["victim-only.md"], new Date(0));
      },
    ],
  },
  memories: {
    create: ["empty", async (r, i) => (await r.memories.list(i)).items.filter((m) => m.userId !== i)],
    get: ["not found", (r, i, v) => r.memories.get(i, v.memoryId)],
    byIds: ["empty", (r, i, v) => r.memories.byIds(i, [v.memoryId])],
    sameText: ["empty", async (r, i) => ((await r.memories.sameText(i, "secret fact of victim")) ? ["found the victim's"] : [])],
    list: ["empty", async (r, i) => (await r.memories.list(i)).items.filter((m) => m.userId !== i)],
    update: ["not found", (r, i, v) => r.memories.update(i, v.memoryId, "injected")],
    setEmbedded: ["empty", async (r, i, v) => ((await r.memories.setEmbedded(i, v.memoryId, "secret fact of victim", "m", "c")) ? ["set"] : [])],
    embeddingInto: ["empty", async (r, i, v) => ((await r.memories.embeddingInto(i, v.memoryId, "secret fact of victim", "c")) ? ["set"] : [])],
    all: ["empty", async (r, i) => (await r.memories.all(i)).filter((m) => m.userId !== i)],
    deleteMany: ["empty", async (r, i, v) => ((await r.memories.deleteMany(i, [v.memoryId])) ? ["deleted"] : [])],
    // With the victim's real updatedAt, as if the intruder had guessed it: the user still decides.
    adopt: ["empty", async (r, i, v) => ((await r.memories.adopt(i, v.memoryId, (await r.memories.get(v.userId, v.memoryId)).updatedAt)) ? ["adopted"] : [])],
    deleteIfUnchanged: [
      "empty",
      async (r, i, v) => ((await r.memories.deleteIfUnchanged(i, v.memoryId, (await r.memories.get(v.userId, v.memoryId)).updatedAt)) ? ["deleted"] : []),
    ],
    delete: ["not found", (r, i, v) => r.memories.delete(i, v.memoryId)],
  },
};
/** Not scoped by a user, by design (see repositories/index.ts). */
const UNSCOPED: Record<string, string[]> = {
  apiKeys: ["authenticate", "ownerOf"],
  devices: ["authenticate"],
  // The nightly upkeep's, across users by design (memory/upkeep.ts).
  requests: ["pruneFinishedBefore", "failInFlight"],
  documents: ["pruneErasedBefore", "inOtherCollection"],
  memories: ["notIn", "usersWithMemories"],
};

describeBackends("per-user isolation", (fx) => {
  it("covers every method of every user-data repository", async () => {
    const db = await fx.openFresh();
    for (const [repo, cases] of Object.entries(CASES)) {
      const methods = Object.getOwnPropertyNames(Object.getPrototypeOf(db.repos[repo as keyof Repositories]))
        .filter((m) => m !== "constructor" && !(UNSCOPED[repo] ?? []).includes(m))
        .sort();
      assert.deepEqual(Object.keys(cases).sort(), methods, `isolation cases of ${repo}`);
    }
  });

  it("finds nothing and changes nothing of another user's data", async () => {
    const db = await fx.openFresh();
    const victim = await seed(db.repos, "victim");
    const intruder = await seed(db.repos, "intruder");
    for (const [repo, cases] of Object.entries(CASES)) {
      for (const [method, [outcome, call]] of Object.entries(cases)) {
        const what = `${repo}.${method}`;
        if (outcome === "not found") {
          await assert.rejects(call(db.repos, intruder.userId, victim), NotFoundError, what);
        } else {
          assert.deepEqual(await call(db.repos, intruder.userId, victim), [], what);
        }
      }
    }
    // The victim's data is as it was.
    const conv = await db.repos.conversations.get(victim.userId, victim.conversationId);
    assert.deepEqual([conv.title, conv.engineAffinity, conv.summary], ["victim's", null, null]);
    const msgs = await db.repos.messages.recent(victim.userId, victim.conversationId, 10);
    assert.deepEqual(msgs.map((m) => [m.content, m.tokens]), [["secret of victim", null]]);
    const req = await db.repos.requests.get(victim.userId, victim.requestId);
    assert.deepEqual([req.status, req.route, req.engine], ["PENDING", null, null]);
    assert.equal((await db.repos.toolCalls.listByRequest(victim.userId, victim.requestId))[0]!.status, "PENDING");
    assert.equal((await db.repos.apiKeys.list(victim.userId)).items[0]!.revokedAt, null);
    assert.equal((await db.repos.devices.get(victim.userId, victim.deviceId)).revokedAt, null);
    assert.equal((await db.repos.devices.listTokens(victim.userId, victim.deviceId))[0]!.revokedAt, null);
    const doc = await db.repos.documents.get(victim.userId, victim.documentId);
    assert.deepEqual([doc.status, doc.chunks, doc.error, doc.collection], ["QUEUED", null, null, null]);
    const mem = await db.repos.memories.get(victim.userId, victim.memoryId);
    assert.deepEqual([mem.text, mem.collection], ["secret fact of victim", null]);
    assert.equal(conv.memoriesThroughId, null);
  });

  it("the database itself refuses a row pointing at another user's parent", async () => {
    const db = await fx.openFresh();
    const victim = await seed(db.repos, "victim");
    const intruder = await seed(db.repos, "intruder");
    // Bypassing the repositories: the composite foreign keys still hold.
    await assert.rejects(
      db.prisma.message.create({
        data: { userId: intruder.userId, conversationId: victim.conversationId, role: "USER", content: "x" },
      }),
      /foreign key|23503/i,
    );
  });

  it("treats a malformed id as not found, not as a database error", async () => {
    const db = await fx.openFresh();
    const u = await seed(db.repos, "someone");
    await assert.rejects(db.repos.conversations.get(u.userId, "not-a-uuid"), NotFoundError);
    await assert.rejects(db.repos.messages.append(u.userId, "'; DROP TABLE messages; --", { role: "USER", content: "x" }), NotFoundError);
  });
});
