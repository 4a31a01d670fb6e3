// Chat on the edge service: a text device's turn streams intent,
// reply_delta…, reply_end and is stored like any other; a device without a
// conversation id goes on in its current conversation; refusals end the call
// with a status and store nothing; cancelling the call aborts the turn.
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import type { AssistantClient } from "@jota/control-plane/gen/jota/v1/assistant";
import { Route } from "@jota/control-plane/gen/jota/v1/assistant";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import type { ConversationLocks } from "@jota/control-plane";
import { assistantClient, auth, chat, deviceToken, grpcCalls, stored, turnsOf, until } from "./helpers/edge";

describe("edge gRPC: Chat", function () {
  this.timeout(180_000);
  let t: TestGateway;
  let client: AssistantClient;
  let alice: TestUser;
  let bob: TestUser;
  before(async () => {
    t = await startTestGateway();
    client = assistantClient(t);
    [alice, bob] = await Promise.all([t.user("alice"), t.user("bob")]);
  });
  after(async () => {
    client?.close();
    await t?.close();
  });

  /** The conversation a Chat turn went to (its intent); the call is then cancelled, so the reply is not waited for. */
  function chatIntent(md: ReturnType<typeof auth>, req: { text: string; conversationId?: string; deviceId?: string }): Promise<string> {
    const call = client.chat({ deviceId: "", conversationId: "", ...req }, md);
    return new Promise((resolve, reject) => {
      call.on("data", (m) => {
        if (m.event?.$case !== "intent") return;
        resolve(m.event.value.conversationId);
        call.cancel();
      });
      call.on("error", (e: { code: status; details: string }) => e.code !== status.CANCELLED && reject(new Error(e.details)));
      call.on("end", () => reject(new Error("the call ended before its intent")));
    });
  }

  it("a device's text turn: intent, reply_delta…, reply_end, stored COMPLETED; the next one continues its conversation", async () => {
    const dev = await deviceToken(t, alice.userId, "terminal");
    const okBefore = await grpcCalls(t, "Chat", "OK");
    const first = await chat(client, auth(dev.token), { text: "Primera pregunta" });
    assert.equal(first.code, status.OK, first.details);
    const [turn] = turnsOf(first.events);
    assert.equal(turnsOf(first.events).length, 1);
    assert.ok(turn!.intent && turn!.end, "intent and reply_end");
    assert.equal(turn!.intent!.route, Route.ROUTE_CHAT);
    assert.equal(turn!.intent!.source, "default");
    assert.ok(turn!.deltas.length > 0);
    assert.match(turn!.end!.finishReason, /^(stop|length)$/);
    assert.ok(turn!.end!.completionTokens > 0 && turn!.end!.promptTokens > 0);
    const conv = turn!.intent!.conversationId;
    const req = await t.stack.db.repos.requests.get(alice.userId, turn!.end!.requestId);
    assert.deepEqual([req.status, req.conversationId], ["COMPLETED", conv]);

    // No conversation id: the device's current conversation (the one it just used).
    const second = await chat(client, auth(dev.token), { text: "Segunda pregunta" });
    assert.equal(second.code, status.OK, second.details);
    const [again] = turnsOf(second.events);
    assert.equal(again!.intent!.conversationId, conv);
    const history = await t.stack.db.repos.messages.recent(alice.userId, conv, 10);
    assert.deepEqual(
      history.map((m) => [m.role, m.content]),
      [
        ["USER", "Primera pregunta"],
        ["ASSISTANT", turn!.deltas.join("")],
        ["USER", "Segunda pregunta"],
        ["ASSISTANT", again!.deltas.join("")],
      ],
    );
    assert.equal(await grpcCalls(t, "Chat", "OK"), okBefore + 2);
  });

  it("another device of the same user, or a named conversation, goes where it says", async () => {
    const [a, b] = await Promise.all([deviceToken(t, alice.userId, "hall"), deviceToken(t, alice.userId, "garage")]);
    const ca = await chatIntent(auth(a.token), { text: "Desde el pasillo" });
    const cb = await chatIntent(auth(b.token), { text: "Desde el garaje" });
    assert.notEqual(ca, cb, "each device has its own current conversation");
    // Naming a conversation uses it (and makes it the device's current one).
    assert.equal(await chatIntent(auth(b.token), { text: "Al pasillo", conversationId: ca }), ca);
    assert.equal(await chatIntent(auth(b.token), { text: "Sigo aquí" }), ca);
    // An API key without a device id has no current conversation: a new one each time; with one, it has.
    const k1 = await chatIntent(auth(alice.key), { text: "Sin dispositivo" });
    const k2 = await chatIntent(auth(alice.key), { text: "Sin dispositivo otra vez" });
    assert.notEqual(k1, k2);
    const d1 = await chatIntent(auth(alice.key), { text: "Con nombre", deviceId: "laptop" });
    assert.equal(await chatIntent(auth(alice.key), { text: "Con nombre otra vez", deviceId: "laptop" }), d1);
    assert.ok(![ca, cb, k1, k2].includes(d1));
  });

  it("refusals end the call with the status and Jota's code, and store nothing", async () => {
    const dev = await deviceToken(t, alice.userId, "refused");
    const revoked = await deviceToken(t, alice.userId, "revoked-token");
    await t.stack.db.repos.devices.revokeToken(alice.userId, revoked.tokenId);
    const gone = await deviceToken(t, alice.userId, "revoked-device");
    await t.stack.db.repos.devices.revoke(alice.userId, gone.deviceId);
    const audioOnly = await t.user("audio-only", ["audio"]);
    const bobsConversation = await t.stack.db.repos.conversations.create(bob.userId, { title: "bob's" });
    const before = await stored(t);
    const unauthenticatedBefore = await grpcCalls(t, "Chat", "UNAUTHENTICATED");

    const cases: [string, Parameters<typeof chat>[1], Parameters<typeof chat>[2], status, string, RegExp][] = [
      ["no token", auth(undefined), { text: "hola" }, status.UNAUTHENTICATED, "unauthorized", /missing bearer/],
      ["unknown token", auth("jota_d_not_a_real_token_0000000000"), { text: "hola" }, status.UNAUTHENTICATED, "unauthorized", /invalid, revoked or expired device token/],
      ["revoked token", auth(revoked.token), { text: "hola" }, status.UNAUTHENTICATED, "unauthorized", /revoked/],
      ["revoked device", auth(gone.token), { text: "hola" }, status.UNAUTHENTICATED, "unauthorized", /revoked/],
      ["no chat scope", auth(audioOnly.key), { text: "hola" }, status.PERMISSION_DENIED, "forbidden", /'chat' scope/],
      ["empty text", auth(dev.token), { text: "  " }, status.INVALID_ARGUMENT, "validation_error", /^text is required/],
      ["huge text", auth(dev.token), { text: "a".repeat(32_001) }, status.INVALID_ARGUMENT, "validation_error", /^text is 32001 characters \(at most 32000\)/],
      ["bad device id", auth(alice.key), { text: "hola", deviceId: "a\nb" }, status.INVALID_ARGUMENT, "validation_error", /^device_id holds control characters/],
      ["another user's conversation", auth(dev.token), { text: "hola", conversationId: bobsConversation.id }, status.NOT_FOUND, "not_found", /conversation .* not found/],
      ["a malformed conversation id", auth(dev.token), { text: "hola", conversationId: "nope" }, status.NOT_FOUND, "not_found", /conversation nope not found/],
    ];
    for (const [name, md, req, code, jota, message] of cases) {
      const r = await chat(client, md, req);
      assert.equal(r.code, code, `${name}: ${status[r.code]} ${r.details}`);
      assert.match(r.details, message, name);
      assert.deepEqual(r.metadata?.get("jota-error-code"), [jota], name);
      assert.deepEqual(r.events, [], name);
    }
    assert.deepEqual(await stored(t), before);
    assert.equal(await grpcCalls(t, "Chat", "UNAUTHENTICATED"), unauthenticatedBefore + 4);

    // The server keeps serving.
    const ok = await chat(client, auth(dev.token), { text: "¿Sigues ahí?" });
    assert.equal(ok.code, status.OK, ok.details);
  });

  it("cancelling the call aborts the turn: ABORTED with the partial reply stored", async () => {
    const dev = await deviceToken(t, bob.userId, "impatient");
    const call = client.chat({ deviceId: "", conversationId: "", text: "Cuéntame algo muy largo" }, auth(dev.token));
    const deltas: string[] = [];
    let requestId = "";
    let conversationId = "";
    const cancelled = new Promise<status>((resolve) => {
      call.on("data", (m) => {
        const e = m.event;
        if (e?.$case === "intent") ({ requestId, conversationId } = e.value);
        if (e?.$case === "replyDelta") {
          deltas.push(e.value.text);
          if (deltas.length === 3) call.cancel();
        }
      });
      call.on("error", (err: { code: status }) => resolve(err.code));
      call.on("end", () => resolve(status.OK));
    });
    assert.equal(await cancelled, status.CANCELLED);
    await until("the request to end", async () => ["COMPLETED", "ABORTED", "FAILED"].includes((await t.stack.db.repos.requests.get(bob.userId, requestId)).status));
    const req = await t.stack.db.repos.requests.get(bob.userId, requestId);
    assert.deepEqual([req.status, req.finishReason], ["ABORTED", "cancelled"]);
    const [user, reply] = await t.stack.db.repos.messages.recent(bob.userId, conversationId, 10);
    assert.equal(user!.content, "Cuéntame algo muy largo");
    // What the device saw is the start of what was stored (more may have been generated before the abort landed).
    assert.ok(reply!.content.startsWith(deltas.join("")), "stored partial reply starts with the streamed deltas");
    assert.ok(req.completionTokens! < 1024, "stopped before max_tokens");
    await until("the call to be counted CANCELLED", async () => (await grpcCalls(t, "Chat", "CANCELLED")) >= 1);
  });
  it("a call cancelled while its turn waits for a busy conversation ends at once; the turn never runs and nothing is stored", async () => {
    const dev = await deviceToken(t, bob.userId, "waiting");
    const conv = await t.stack.db.repos.conversations.create(bob.userId);
    // Another interface's turn holds the conversation (its lock, as the runner takes it).
    const locks = (t.stack.runner as unknown as { deps: { locks: ConversationLocks } }).deps.locks;
    const release = await locks.acquire(conv.id);
    try {
      const call = client.chat({ deviceId: "", conversationId: conv.id, text: "¿Me esperas?" }, auth(dev.token));
      const ended = new Promise<status>((resolve) => {
        call.on("error", (err: { code: status }) => resolve(err.code));
        call.on("end", () => resolve(status.OK));
      });
      call.on("data", () => {});
      await new Promise((r) => setTimeout(r, 300)); // the turn is waiting for the conversation now
      const before = await grpcCalls(t, "Chat", "CANCELLED");
      call.cancel();
      assert.equal(await ended, status.CANCELLED);
      // The server's side of the call ends too, with the conversation still busy: the turn's wait was given up.
      await until("the server to end the call", async () => (await grpcCalls(t, "Chat", "CANCELLED")) > before);
    } finally {
      release();
    }
    // Once the conversation is free, the abandoned turn does not start after all.
    await new Promise((r) => setTimeout(r, 1000));
    const left = (await t.stack.db.repos.requests.list(bob.userId, { conversationId: conv.id })).items;
    assert.equal(left.length, 0, `no request stored: ${JSON.stringify(left.map((r) => [r.status, r.error]))}`);
    assert.deepEqual((await t.stack.db.repos.messages.recent(bob.userId, conv.id, 10)).length, 0, "no message stored");
    assert.equal(locks.busy(conv.id), false);
  });
});
