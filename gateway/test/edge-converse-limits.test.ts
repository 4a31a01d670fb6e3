// A well-formed voice session survives a refused turn: with one streaming
// turn allowed per credential (JOTA_MAX_STREAMS=1), an utterance heard while
// the device's Chat turn runs gets an `error` event (too_many_streams), the
// stream stays open, and the next utterance, once the slot is free, is
// answered; the refused utterance's words are still on the stream (its
// stt_final) and nothing half-done is stored for it.
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { startTestGateway, type TestGateway } from "./helpers/gateway";
import { assistantClient, auth, chunked, converse, deviceToken, finalsOf, grpcCalls, jfkPcm, stored, summary, turnsOf, until } from "./helpers/edge";

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
      // The credential's one slot is taken by a Chat turn that streams meanwhile.
      const text = client.chat({ deviceId: "", conversationId: "", text: "Cuéntame algo largo" }, auth(dev.token));
      const chatIntent = new Promise<string>((resolve, reject) => {
        text.on("data", (m) => m.event?.$case === "intent" && resolve(m.event.value.requestId));
        text.on("error", (e: { code: status }) => e.code !== status.CANCELLED && reject(e));
      });
      const chatRequest = await chatIntent;
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

      // The Chat turn ends (cancelled here), freeing the slot; the device speaks again.
      text.cancel();
      await until("the chat turn to end", () => t.stack.runner.find(user.userId, chatRequest)?.finished === true);
      await until("its slot to be free", () => t.stack.runner.running === 0);
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
