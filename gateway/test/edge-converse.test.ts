// Converse, a voice session on one stream: jfk.wav in, the transcription
// engine's own finals out as stt_final (compared with what the engine makes
// of the same audio, not with JFK's words: the test model transcribes any
// audio to the same planted words), then the turn's intent, reply_delta… and
// reply_end; stored like any turn. A device keeps its stream for many turns
// (end_of_audio flushes each one) in one conversation, which its next Chat
// continues. Cancelling the stream aborts the running turn.
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import type { AssistantClient } from "@jota/control-plane/gen/jota/v1/assistant";
import { prng } from "../../engines/tests/helpers/transcription";
import { startEdgeServer } from "../src/edge/server";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import {
  assistantClient,
  auth,
  chat,
  chunked,
  converse,
  deviceToken,
  engineFinals,
  finalsOf,
  grpcCalls,
  heard,
  type HeardFinal,
  jfkPcm,
  summary,
  turnsOf,
  until,
  type SeenTurn,
} from "./helpers/edge";

const JFK_S = 11;

describe("edge gRPC: Converse", function () {
  this.timeout(300_000);
  let t: TestGateway;
  let client: AssistantClient;
  let alice: TestUser;
  let jfk: Buffer;
  let chunks: Buffer[];
  /** jfk.wav's first 3 s: one utterance ("And so my fellow Americans"), one turn. */
  let clip: Buffer[];
  let reference: HeardFinal[];
  let texts: string[];
  before(async () => {
    t = await startTestGateway({ transcription: true });
    client = assistantClient(t);
    alice = await t.user("alice");
    jfk = jfkPcm();
    chunks = chunked(jfk, 3200); // 100 ms
    clip = chunks.slice(0, 30);
    reference = (await engineFinals(t, {}, [chunks])).map(heard);
    texts = reference.map((f) => f.text.trim()).filter(Boolean);
    assert.ok(texts.length > 0, `the engine hears words in jfk.wav: ${JSON.stringify(reference)}`);
  });
  after(async () => {
    client?.close();
    await t?.close();
  });

  /** Each ended turn's stored request and messages agree with what the device saw. */
  async function checkStored(userId: string, turns: SeenTurn[]) {
    for (const turn of turns) {
      assert.ok(turn.end, `a turn without reply_end: ${JSON.stringify(turn.error)}`);
      const req = await t.stack.db.repos.requests.get(userId, turn.end.requestId);
      assert.equal(req.status, turn.end.finishReason === "cancelled" ? "ABORTED" : "COMPLETED");
      const msgs = await t.stack.db.repos.messages.ofRequest(userId, turn.end.requestId);
      // A turn cut before its first token stores no reply.
      const reply = turn.deltas.join("");
      assert.deepEqual(msgs.map((m) => m.role), reply ? ["USER", "ASSISTANT"] : ["USER"]);
      if (reply) assert.equal(msgs[1]!.content, reply, "the stored reply is what was streamed");
    }
  }

  /** The user messages of a conversation, in order. */
  const userMessages = async (userId: string, conversationId: string) =>
    (await t.stack.db.repos.messages.recent(userId, conversationId, 200)).filter((m) => m.role === "USER").map((m) => m.content);

  it("a voice turn: stt_final as the engine hears jfk.wav, then intent, reply_delta…, reply_end; half-close ends it OK", async () => {
    const dev = await deviceToken(t, alice.userId, "kitchen");
    const okBefore = await grpcCalls(t, "Converse", "OK");
    const run = converse(client, auth(dev.token)).config();
    await run.audio(chunks);
    run.end();
    const ended = await run.done;
    assert.equal(ended.code, status.OK, `${ended.details}; ${summary(run.events)}`);

    const finals = finalsOf(run.events);
    assert.deepEqual(finals.map(heard), reference);
    for (const [i, f] of finals.entries()) {
      assert.ok(f.startS >= 0 && f.startS < f.endS && f.endS <= JFK_S + 0.5, `final ${i}: ${f.startS}..${f.endS}`);
      if (i > 0) assert.ok(f.startS >= finals[i - 1]!.endS - 0.5, "in order");
    }
    assert.equal(finals[0]!.language, "en");

    const turns = turnsOf(run.events);
    assert.ok(turns.length >= 1, summary(run.events));
    const last = turns.at(-1)!;
    assert.ok(last.intent, "the last turn started");
    assert.match(last.end!.finishReason, /^(stop|length)$/, "the last utterance's turn ran to its end");
    assert.ok(last.deltas.length > 0);
    // Earlier turns (when jfk.wav is several utterances) were cut by the next one.
    for (const turn of turns.slice(0, -1)) assert.equal(turn.end?.finishReason, "cancelled");
    await checkStored(alice.userId, turns);

    // One conversation; the user's words are exactly the finals, in order: nothing heard is lost.
    const conversations = new Set(turns.flatMap((x) => (x.intent ? [x.intent.conversationId] : [])));
    assert.equal(conversations.size, 1);
    const [conv] = conversations;
    assert.equal((await userMessages(alice.userId, conv!)).join(" "), texts.join(" "));
    assert.equal(await grpcCalls(t, "Converse", "OK"), okBefore + 1);
  });

  it("stt_partial while an utterance is spoken (audio paced in real time)", async () => {
    // One long utterance, so that no final overtakes the partials while the
    // decoder works: noise bursts with gaps shorter than the VAD's hangover,
    // after a second of near-silence for its noise floor. (The test model
    // hears words in any sound.)
    const rand = prng(5);
    const speechLike = Buffer.alloc(2 * 16000 * 24);
    for (let i = 0; i < speechLike.length / 2; i++) {
      const loud = i >= 16000 && i % 8000 < 6400;
      speechLike.writeInt16LE(Math.round((rand() * 2 - 1) * (loud ? 10_000 : 30)), i * 2);
    }
    const run = converse(client, auth(alice.key)).config();
    let partial = -1;
    void run.waitFor("an stt_partial", (e) => e.$case === "sttPartial", 0, 120_000).then(
      (i) => (partial = i),
      () => {},
    );
    for (const c of chunked(speechLike, 3200)) {
      if (partial >= 0) break;
      await run.audio([c]);
      await new Promise((r) => setTimeout(r, 100));
    }
    run.endOfAudio();
    const final = await run.waitFor("the utterance's stt_final", (e) => e.$case === "sttFinal");
    assert.ok(partial >= 0 && partial < final, `a partial before the final: ${summary(run.events)}`);
    run.call.cancel();
    await run.done;
  });

  it("one stream, many turns: end_of_audio flushes each, they share a conversation in order; the device's Chat continues it", async () => {
    const dev = await deviceToken(t, alice.userId, "living-room");
    const run = converse(client, auth(dev.token)).config({ deviceId: "ignored-for-device-tokens" });
    const settled = (from: number) =>
      run.waitFor("the feed's last turn to end", (e) => e.$case === "replyEnd" && e.value.finishReason !== "cancelled", from);

    await run.audio(clip);
    run.endOfAudio();
    const end1 = await settled(0);
    await run.audio(clip);
    run.endOfAudio();
    const end2 = await settled(end1 + 1);
    run.end();
    assert.equal((await run.done).code, status.OK);

    // Each end_of_audio closed one engine stream: the second feed is heard exactly like the first, its times after it.
    const twice = (await engineFinals(t, {}, [clip, clip])).map(heard);
    assert.deepEqual(finalsOf(run.events).map(heard), twice);
    assert.equal(twice.length, 2);
    assert.ok(twice[1]!.startS >= 3 - 0.1, `the second feed's times count from the stream's start: ${twice[1]!.startS}`);

    const turns = turnsOf(run.events);
    const firstFeed = turnsOf(run.events.slice(0, end1 + 1));
    const secondFeed = turnsOf(run.events.slice(end1 + 1, end2 + 1));
    assert.equal(turns.length, firstFeed.length + secondFeed.length);
    await checkStored(alice.userId, turns);
    const conv = firstFeed.at(-1)!.intent!.conversationId;
    assert.ok(turns.every((x) => !x.intent || x.intent.conversationId === conv), "one conversation for the stream");
    // The conversation holds both exchanges, in order.
    const history = await t.stack.db.repos.messages.recent(alice.userId, conv, 10);
    assert.deepEqual(
      history.map((m) => [m.role, m.content]),
      [
        ["USER", twice[0]!.text.trim()],
        ["ASSISTANT", firstFeed.at(-1)!.deltas.join("")],
        ["USER", twice[1]!.text.trim()],
        ["ASSISTANT", secondFeed.at(-1)!.deltas.join("")],
      ],
    );

    // The device's current conversation: its Chat without a conversation id goes on there.
    const text = await chat(client, auth(dev.token), { text: "Y ahora por escrito" });
    assert.equal(text.code, status.OK, text.details);
    assert.equal(turnsOf(text.events)[0]!.intent!.conversationId, conv);
  });

  it("float32le stereo audio is heard like the same samples in pcm16le mono", async () => {
    const samples = new Int16Array(jfk.buffer, jfk.byteOffset, jfk.length / 2);
    const stereo = Buffer.alloc(samples.length * 8);
    samples.forEach((v, i) => {
      stereo.writeFloatLE(v / 32768, i * 8);
      stereo.writeFloatLE(v / 32768, i * 8 + 4);
    });
    const run = converse(client, auth(alice.key)).config({ encoding: "float32le", channels: 2 });
    await run.audio(chunked(stereo, 12_800));
    run.endOfAudio();
    // The first utterance is enough: same samples, same VAD cut, same words.
    await run.waitFor("the first final", (e) => e.$case === "sttFinal");
    assert.deepEqual(heard(finalsOf(run.events)[0]!), reference[0]);
    run.call.cancel();
    await run.done;
  });

  it("a long stream moves to a fresh engine stream at a pause, its times and turns going on", async () => {
    // A second edge server on the same gateway, rotating after 2 s of audio (production: 30 minutes).
    const edge = await startEdgeServer(t.gw.ctx, "127.0.0.1:0", { rotateAfterS: 2 });
    const rotating = assistantClient({ grpcAddress: edge.address });
    try {
      const engine = t.stack.pool.transcription[0]!.client;
      const streamsBefore = Number((await engine.info()).counters!.streams);
      const run = converse(rotating, auth(alice.key)).config();
      // Paced like a microphone (at twice real time): the gateway rotates at a
      // pause the engine has reported, and audio written faster than the
      // engine reads it would all be sent before any pause is known.
      await run.audio(chunks, 50);
      run.end();
      const ended = await run.done;
      assert.equal(ended.code, status.OK, `${ended.details}; ${summary(run.events)}`);
      const opened = Number((await engine.info()).counters!.streams) - streamsBefore;
      assert.ok(opened >= 2, `engine streams opened for one device stream: ${opened}`);
      const finals = finalsOf(run.events);
      assert.ok(finals.length >= 2 && finals.every((f) => f.text.trim() !== ""), summary(run.events));
      for (const [i, f] of finals.entries()) {
        assert.ok(f.startS < f.endS && f.endS <= JFK_S + 0.5, `final ${i}: ${f.startS}..${f.endS}`);
        if (i > 0) assert.ok(f.startS >= finals[i - 1]!.endS - 0.5, `times go on across engine streams: ${JSON.stringify(finals.map(heard))}`);
      }
      assert.match(turnsOf(run.events).at(-1)!.end!.finishReason, /^(stop|length)$/);
    } finally {
      rotating.close();
      await edge.close();
    }
  });

  it("a quiet device holds no engine stream: it is half-closed after the idle limit, and the next audio is heard on a fresh one", async () => {
    // Idle limit 500 ms here (production: 20 s, under the engine's own --stream-idle-s of 60 s).
    const edge = await startEdgeServer(t.gw.ctx, "127.0.0.1:0", { idleFlushMs: 500 });
    const quiet = assistantClient({ grpcAddress: edge.address });
    const leases = () => t.stack.pool.transcription[0]!.inflight;
    try {
      const before = leases();
      const run = converse(quiet, auth(alice.key)).config({ deviceId: "wake-word-satellite" });
      await until("the session's engine stream to open", () => leases() === before + 1, 10_000);
      // Waiting for its wake word, the device sends nothing: its decoder goes back to the engine.
      await until("the quiet session's engine stream to be released", () => leases() === before, 5_000);
      assert.equal(run.events.length, 0, summary(run.events));

      await run.audio(clip);
      run.endOfAudio();
      await run.waitFor("the turn's reply_end", (e) => e.$case === "replyEnd");
      run.end();
      const ended = await run.done;
      assert.equal(ended.code, status.OK, `${ended.details}; ${summary(run.events)}`);
      const expected = (await engineFinals(t, {}, [clip])).map(heard);
      assert.deepEqual(finalsOf(run.events).map(heard), expected, "heard as the engine hears the clip alone");
      assert.equal(leases(), before);
    } finally {
      quiet.close();
      await edge.close();
    }
  });

  it("cancelling the stream aborts the running turn: ABORTED, partial reply stored", async () => {
    const run = converse(client, auth(alice.key)).config({ deviceId: "cancel-me" });
    await run.audio(clip);
    run.endOfAudio();
    const delta = await run.waitFor("the reply streaming", (e) => e.$case === "replyDelta");
    const turn = turnsOf(run.events.slice(0, delta + 1)).at(-1)!;
    const requestId = turn.intent!.requestId;
    const cancelledBefore = await grpcCalls(t, "Converse", "CANCELLED");
    const handle = t.stack.runner.find(alice.userId, requestId);
    assert.ok(handle && !handle.finished, "the turn was still running when the device cancelled");
    run.call.cancel();
    assert.equal((await run.done).code, status.CANCELLED);
    await until("the request to end", async () => ["COMPLETED", "ABORTED", "FAILED"].includes((await t.stack.db.repos.requests.get(alice.userId, requestId)).status));
    const req = await t.stack.db.repos.requests.get(alice.userId, requestId);
    assert.deepEqual([req.status, req.finishReason], ["ABORTED", "cancelled"]);
    assert.ok(req.completionTokens! < 1024, "stopped before max_tokens");
    const msgs = await t.stack.db.repos.messages.ofRequest(alice.userId, requestId);
    assert.ok(msgs[1]!.content.startsWith(turn.deltas.join("")));
    await until("the call to be counted CANCELLED", async () => (await grpcCalls(t, "Converse", "CANCELLED")) === cancelledBefore + 1);
  });
});
