// Cancellation: when the client cancels (or its deadline passes) the engine
// stops that sequence before its next token (at most one more is decoded),
// and the slot serves the next request at once.
import assert from "node:assert/strict";
import { Metadata, status } from "@grpc/grpc-js";
import type { GenerateEvent } from "../../control-plane/src/gen/jota/v1/inference";
import { InferenceHarness, prompt, tinyChatArgs } from "./helpers/inference";

async function waitFor<T>(probe: () => Promise<T>, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("inference: cancellation", function () {
  this.timeout(120_000);
  let h: InferenceHarness;
  // A large context so an uncancelled generation would run for seconds.
  before(async () => (h = await InferenceHarness.start(tinyChatArgs(["--slots", "1", "--ctx-size", "16384"]))));
  after(async () => h?.stop());

  it("cancel mid-stream: at most one token decoded after the cancel is seen, slot free at once", async () => {
    const before = (await h.info()).counters!;
    const call = h.client.generate(prompt("Keep talking", { maxTokens: 0 }));
    let deltas = 0;
    const ended = new Promise<number>((resolve) => {
      call.on("data", (ev: GenerateEvent) => {
        if (ev.event?.$case === "delta" && ++deltas === 5) call.cancel();
      });
      call.on("error", (e: { code: number }) => resolve(e.code));
      call.on("end", () => resolve(-1));
    });
    assert.equal(await ended, status.CANCELLED);
    const after = await waitFor(() => h.info(), (i) => i.slotsBusy === 0 && i.counters!.cancellations > before.cancellations);
    assert.equal(after.slotsBusy, 0);
    assert.equal(after.counters!.cancellations - before.cancellations, 1);
    assert.ok(after.counters!.tokensAfterCancel - before.tokensAfterCancel <= 1);
    // Nothing keeps decoding in the background.
    const settled = after.counters!.generatedTokens;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await h.info()).counters!.generatedTokens, settled);
    // The only slot takes the next request immediately.
    const next = await h.generate(prompt("Next", { maxTokens: 2 }));
    assert.ok(next.started.queueMs < 50, `queued ${next.started.queueMs} ms`);
  });

  it("a passed deadline stops decoding like a cancel", async () => {
    const before = (await h.info()).counters!;
    const code = await new Promise<number>((resolve) => {
      const call = h.client.generate(prompt("Deadline", { maxTokens: 0 }), new Metadata(), { deadline: Date.now() + 300 });
      call.on("data", () => {});
      call.on("error", (e: { code: number }) => resolve(e.code));
      call.on("end", () => resolve(-1));
    });
    assert.equal(code, status.DEADLINE_EXCEEDED);
    const after = await waitFor(() => h.info(), (i) => i.slotsBusy === 0 && i.counters!.cancellations > before.cancellations);
    assert.equal(after.counters!.cancellations - before.cancellations, 1);
    assert.ok(after.counters!.tokensAfterCancel - before.tokensAfterCancel <= 1);
  });

  it("a request cancelled while queued never takes the slot", async () => {
    const running = h.generate(prompt("Busy", { maxTokens: 300 }));
    await new Promise((r) => setTimeout(r, 20));
    const before = (await h.info()).counters!;
    const queued = h.client.generate(prompt("Waiting", { maxTokens: 5 }));
    const code = new Promise<number>((resolve) => {
      queued.on("data", () => {});
      queued.on("error", (e: { code: number }) => resolve(e.code));
      queued.on("end", () => resolve(-1));
    });
    await new Promise((r) => setTimeout(r, 20));
    queued.cancel();
    assert.equal(await code, status.CANCELLED);
    await running;
    const after = await waitFor(() => h.info(), (i) => i.queueLength === 0 && i.slotsBusy === 0);
    assert.equal(after.counters!.requests - before.requests, 0, "the cancelled request was admitted");
  });
});
