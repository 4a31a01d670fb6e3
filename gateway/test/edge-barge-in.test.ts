// Barge-in: new speech while a reply streams cancels that reply (its request
// ends ABORTED with the partial reply stored, the device gets reply_end with
// finish_reason "cancelled") and the new utterance starts a new turn, on the
// same stream, in the same conversation; nothing the user said is lost.
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import type { ConversationLocks } from "@jota/control-plane";
import type { AssistantClient } from "@jota/control-plane/gen/jota/v1/assistant";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { assistantClient, auth, chunked, converse, deviceToken, engineFinals, finalsOf, jfkPcm, summary, turnsOf } from "./helpers/edge";

describe("edge gRPC: Converse barge-in", function () {
  this.timeout(240_000);
  let t: TestGateway;
  let client: AssistantClient;
  let alice: TestUser;
  let utterance: Buffer[];
  let heard: string;
  before(async () => {
    t = await startTestGateway({ transcription: true });
    client = assistantClient(t);
    alice = await t.user("alice");
    // One utterance of jfk.wav ("And so my fellow Americans"), so the first feed is exactly one turn.
    utterance = chunked(jfkPcm().subarray(0, 2 * 16000 * 3), 3200);
    const finals = await engineFinals(t, {}, [utterance]);
    assert.equal(finals.length, 1, `the clip is one utterance for the engine: ${JSON.stringify(finals)}`);
    heard = finals[0]!.text.trim();
    assert.ok(heard !== "");
  });
  after(async () => {
    client?.close();
    await t?.close();
  });

  it("speech during the reply cancels it and the new utterance is answered by a new turn", async () => {
    const dev = await deviceToken(t, alice.userId, "kitchen");
    const run = converse(client, auth(dev.token)).config();
    await run.audio(utterance);
    run.endOfAudio();
    const intentAt = await run.waitFor("the first turn's intent", (e) => e.$case === "intent");
    await run.waitFor("its reply streaming", (e) => e.$case === "replyDelta", intentAt);
    const first = run.events[intentAt]!;
    assert.equal(first.$case, "intent");
    const firstId = first.$case === "intent" ? first.value.requestId : "";

    // The user speaks again while the reply streams.
    await run.audio(utterance);
    run.endOfAudio();
    const endAt = await run.waitFor("the first reply's end", (e) => e.$case === "replyEnd" && e.value.requestId === firstId);
    const end = run.events[endAt]!;
    assert.ok(end.$case === "replyEnd" && end.value.finishReason === "cancelled", summary(run.events));
    const nextAt = await run.waitFor("a new turn", (e) => e.$case === "intent", endAt);
    const second = run.events[nextAt]!;
    assert.ok(second.$case === "intent" && second.value.requestId !== firstId);
    await run.waitFor("the new turn's end", (e) => e.$case === "replyEnd", nextAt);
    run.end();
    assert.equal((await run.done).code, status.OK, summary(run.events));

    // Exactly two turns: the interrupted one, then the answer to the new utterance.
    assert.deepEqual(
      finalsOf(run.events).map((f) => f.text.trim()),
      [heard, heard],
    );
    const turns = turnsOf(run.events);
    assert.equal(turns.length, 2, summary(run.events));
    const [cut, answered] = turns as [(typeof turns)[0], (typeof turns)[0]];
    assert.ok(cut.deltas.length > 0, "the first reply was streaming when it was cut");
    assert.match(answered.end!.finishReason, /^(stop|length)$/);
    assert.equal(answered.intent!.conversationId, cut.intent!.conversationId);
    // The second utterance's final came after the first reply had started: the cut was a barge-in, not a queue.
    const secondFinalAt = run.events.findIndex((e, i) => i > intentAt && e.$case === "sttFinal");
    assert.ok(secondFinalAt > intentAt);

    const { requests, messages } = t.stack.db.repos;
    const r1 = await requests.get(alice.userId, cut.end!.requestId);
    const r2 = await requests.get(alice.userId, answered.end!.requestId);
    assert.deepEqual([r1.status, r1.finishReason, r2.status], ["ABORTED", "cancelled", "COMPLETED"]);
    assert.ok(r1.completionTokens! < 1024, "cut before max_tokens");
    const history = await messages.recent(alice.userId, cut.intent!.conversationId, 10);
    assert.deepEqual(
      history.map((m) => [m.role, m.content]),
      [
        ["USER", heard],
        ["ASSISTANT", cut.deltas.join("")],
        ["USER", heard],
        ["ASSISTANT", answered.deltas.join("")],
      ],
    );
  });

  it("speech while the turn still waits for its busy conversation loses nothing: both utterances are one turn once it is free", async () => {
    const dev = await deviceToken(t, alice.userId, "hall");
    const conv = await t.stack.db.repos.conversations.create(alice.userId);
    // Another interface's turn holds the conversation (its lock, as the runner takes it).
    const locks = (t.stack.runner as unknown as { deps: { locks: ConversationLocks } }).deps.locks;
    const release = await locks.acquire(conv.id);
    let released = false;
    try {
      const run = converse(client, auth(dev.token)).config({ conversationId: conv.id });
      await run.audio(utterance);
      run.endOfAudio();
      const firstAt = await run.waitFor("the first final", (e) => e.$case === "sttFinal");
      await new Promise((r) => setTimeout(r, 300)); // its turn waits for the conversation now
      await run.audio(utterance);
      run.endOfAudio();
      const secondAt = await run.waitFor("the second final", (e) => e.$case === "sttFinal", firstAt + 1);
      await new Promise((r) => setTimeout(r, 300));
      release();
      released = true;
      await run.waitFor("the turn's end", (e) => e.$case === "replyEnd", secondAt);
      run.end();
      assert.equal((await run.done).code, status.OK, summary(run.events));
      assert.ok(!run.events.some((e) => e.$case === "error"), summary(run.events));
      const turns = turnsOf(run.events);
      assert.equal(turns.length, 1, summary(run.events));
      const history = await t.stack.db.repos.messages.recent(alice.userId, conv.id, 10);
      assert.deepEqual(
        history.filter((m) => m.role === "USER").map((m) => m.content),
        [`${heard} ${heard}`],
        "what was said while the turn waited is answered with what came after",
      );
    } finally {
      if (!released) release();
    }
  });
});
