// A well-formed voice session survives a refused turn: with one streaming
// turn allowed per credential (JOTA_MAX_STREAMS=1), an utterance heard while
// the credential's one slot is taken gets an `error` event (too_many_streams), the
// stream stays open, and the next utterance, once the slot is free, is
// answered; the refused utterance's words are still on the stream (its
// stt_final) and nothing half-done is stored for it.
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { startTestGateway, type TestGateway } from "./helpers/gateway";
import { assistantClient, auth, chunked, converse, deviceToken, finalsOf, grpcCalls, jfkPcm, stored, summary, turnsOf } from "./helpers/edge";

describe("edge gRPC: Converse under the stream limit", function () {
  this.timeout(180_000);
  let t: TestGateway;
  before(async () => {
    t = await startTestGateway({ transcription: true, env: { JOTA_MAX_STREAMS: "1" } });
  });
  after(() => t?.close());

  it("a turn refused by the limit is an error event; the stream goes on and answers the next utterance", async () => {
    const user = await t.user("busy");
    const dev = await deviceToken(t, user.userId, "kitchen");
    const client = assistantClient(t);
    const clip = chunked(jfkPcm().subarray(0, 3 * 32000), 3200);
    try {
      // The credential's one slot is held, as a turn of another of its streams would hold it, for as
      // long as the test needs (a real turn of the tiny model may end before the utterance is heard).
      const release = t.gw.ctx.limits.openStream(await t.gw.ctx.auth.authenticate(`Bearer ${dev.token}`));
      const before = await stored(t);
      const okBefore = await grpcCalls(t, "Converse", "OK");

      const run = converse(client, auth(dev.token)).config();
      await run.audio(clip);
      run.endOfAudio();
      const refusedAt = await run.waitFor("the refusal", (e) => e.$case === "error");
      const refusal = run.events[refusedAt]!;
      assert.ok(refusal.$case === "error");
      assert.equal(refusal.value.code, "too_many_streams");
      assert.match(refusal.value.message, /at most 1 concurrent streams per credential/);
      assert.equal(refusal.value.requestId, "");
      assert.equal(finalsOf(run.events).length, 1, "the utterance was heard");
      assert.deepEqual(await stored(t), before, "nothing stored for the refused turn");

      // The slot is given back; the device speaks again.
      release();
      await run.audio(clip);
      run.endOfAudio();
      const intentAt = await run.waitFor("the next turn", (e) => e.$case === "intent", refusedAt);
      await run.waitFor("its end", (e) => e.$case === "replyEnd", intentAt);
      run.end();
      assert.equal((await run.done).code, status.OK, summary(run.events));
      assert.equal(await grpcCalls(t, "Converse", "OK"), okBefore + 1);
      const turns = turnsOf(run.events);
      assert.equal(turns.length, 1, summary(run.events));
      assert.match(turns[0]!.end!.finishReason, /^(stop|length)$/);
    } finally {
      client.close();
    }
  });
});

describe("edge gRPC: Converse under the rate limit (JOTA_RATE_LIMIT=1 a minute, burst 2)", function () {
  this.timeout(180_000);
  let t: TestGateway;
  before(async () => {
    t = await startTestGateway({ transcription: true, env: { JOTA_RATE_LIMIT: "1", JOTA_RATE_BURST: "2" } });
  });
  after(() => t?.close());

  it("a turn refused rate_limited is an error event, counted once in jota_rate_limited_total", async () => {
    const user = await t.user("chatty");
    const dev = await deviceToken(t, user.userId, "porch");
    const client = assistantClient(t);
    const clip = chunked(jfkPcm().subarray(0, 3 * 32000), 3200);
    const limited = async () => (await t.gw.ctx.metrics.rateLimited.get()).values.find((v) => v.labels.interface === "grpc")?.value ?? 0;
    try {
      // The call's own check takes one of the two, the first turn the other.
      const run = converse(client, auth(dev.token)).config();
      await run.audio(clip);
      run.endOfAudio();
      const firstEnd = await run.waitFor("the first turn's end", (e) => e.$case === "replyEnd");
      const before = await limited();
      await run.audio(clip);
      run.endOfAudio();
      const refusedAt = await run.waitFor("the refusal", (e) => e.$case === "error", firstEnd);
      const refusal = run.events[refusedAt]!;
      assert.ok(refusal.$case === "error" && refusal.value.code === "rate_limited", summary(run.events));
      assert.equal(await limited(), before + 1);
      run.end();
      assert.equal((await run.done).code, status.OK, summary(run.events));
    } finally {
      client.close();
    }
  });
});
