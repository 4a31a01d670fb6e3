// Continuous batching: concurrent streams share decode steps, each one
// complete and ordered, and (greedy) equal to its single-stream output.
import assert from "node:assert/strict";
import { FinishReason } from "../../control-plane/src/gen/jota/v1/inference";
import { InferenceHarness, prompt, requireFile, testModel, tinyChatArgs, type Collected } from "./helpers/inference";

const PROMPTS = ["Alpha beta gamma", "The weather in Lisbon", "SELECT * FROM", "Había una vez", "import numpy as", "Dear Sir or Madam,"];

describe("inference: concurrent streams", function () {
  this.timeout(300_000);
  let h: InferenceHarness;
  before(async () => (h = await InferenceHarness.start(tinyChatArgs())));
  after(async () => h?.stop());

  it("4 slots, 6 concurrent requests: each equals its single-stream greedy output", async () => {
    const single: Collected[] = [];
    for (const p of PROMPTS) single.push(await h.generate(prompt(p, { maxTokens: 48 })));
    const concurrent = await Promise.all(PROMPTS.map((p) => h.generate(prompt(p, { maxTokens: 48 }))));
    concurrent.forEach((r, i) => {
      assert.equal(r.done.finishReason, single[i]!.done.finishReason);
      assert.deepEqual(r.ids, single[i]!.ids, `prompt ${i} diverged under batching`);
      assert.equal(r.text, single[i]!.text);
    });
    // More requests than slots: some waited in the queue, and all completed.
    const slots = new Set(concurrent.map((r) => r.started.slot));
    assert.equal(slots.size, 4);
    assert.ok(concurrent.some((r) => r.started.queueMs > 0));
  });

  it("a new request joins while others are generating (no waiting for them to finish)", async () => {
    const long = h.generate(prompt("Count with me: one", { maxTokens: 600 }));
    await new Promise((r) => setTimeout(r, 30));
    const t0 = Date.now();
    const short = await h.generate(prompt("Hi", { maxTokens: 4 }));
    const shortMs = Date.now() - t0;
    const l = await long;
    assert.equal(short.done.finishReason, FinishReason.FINISH_REASON_LENGTH);
    assert.equal(l.ids.length, 600);
    // The short request finished while the long one was still running.
    assert.ok(shortMs < (l.done.timings!.decodeMs ?? 0), `short took ${shortMs} ms, long decoded for ${l.done.timings?.decodeMs} ms`);
    assert.ok(short.started.queueMs < 50, `queued ${short.started.queueMs} ms behind a running stream`);
  });

  it("a request waiting for its session's busy slot does not hold up the requests queued behind it", async () => {
    // The session's first request runs long; its second waits for that slot
    // (its KV cache is there). The anonymous request queued after it has
    // free slots to go to and must not wait for the session.
    const ended: Record<string, number> = {};
    const track = (name: string, p: Promise<Collected>) => p.then((r) => ((ended[name] = Date.now()), r));
    const first = track("first", h.generate(prompt("Count with me: one", { sessionId: "hol-session", maxTokens: 600 })));
    await new Promise((r) => setTimeout(r, 30));
    const second = track("second", h.generate(prompt("Count with me: one, two", { sessionId: "hol-session", maxTokens: 4 })));
    await new Promise((r) => setTimeout(r, 30));
    const other = await track("other", h.generate(prompt("Hi", { maxTokens: 4 })));
    const [f, s] = await Promise.all([first, second]);
    assert.equal(f.ids.length, 600);
    assert.equal(s.done.finishReason, FinishReason.FINISH_REASON_LENGTH);
    assert.equal(other.done.finishReason, FinishReason.FINISH_REASON_LENGTH);
    assert.ok(ended.other! < ended.first!, `the anonymous request ended ${ended.other! - ended.first!} ms after the session's running one`);
    assert.ok(other.started.queueMs < 50, `queued ${other.started.queueMs} ms behind the waiting session request`);
    // The session's second request did wait, in the slot that holds its cache.
    assert.ok(ended.second! >= ended.first!);
    assert.equal(s.started.slot, f.started.slot);
    assert.ok(s.started.cachedTokens > 0, "it reused the session's cache");
  });

  it("a short prompt that arrives while a long one prefills is not held until all of it is done", async () => {
    // Small chunks, so the long prompt takes many steps; the first claim on each step's room goes round the slots.
    const e = await InferenceHarness.start(["--model", requireFile(testModel("tiny-chat.gguf")), "--threads", "2", "--slots", "2", "--ctx-size", "4096", "--batch-size", "16"]);
    try {
      const ended: Record<string, number> = {};
      const long = e.generate(prompt("uno dos tres cuatro ".repeat(500), { maxTokens: 1 })).then((r) => ((ended.long = Date.now()), r));
      for (let i = 0; (await e.info()).slotsBusy < 1; i++) {
        assert.ok(i < 500, "the long request never started");
        await new Promise((r) => setTimeout(r, 2));
      }
      const short = await e.generate(prompt("Hi", { maxTokens: 1 }));
      ended.short = Date.now();
      const l = await long;
      assert.ok(l.started.promptTokens > 1500, `the long prompt has ${l.started.promptTokens} tokens`);
      assert.notEqual(short.started.slot, l.started.slot);
      assert.ok(ended.short < ended.long!, `the short request ended ${ended.short - ended.long!} ms after the long one's prefill`);
      assert.ok(short.done.timings!.prefillMs! * 5 < l.done.timings!.prefillMs!, `prefill ${short.done.timings!.prefillMs} ms (short) vs ${l.done.timings!.prefillMs} ms (long)`);
    } finally {
      await e.stop();
    }
  });

  it("Info reports busy slots while streams run, and none after", async () => {
    let finished = false;
    const running = Promise.all([0, 1].map((i) => h.generate(prompt(`stream ${i}`, { maxTokens: 400 })))).finally(() => (finished = true));
    // Polled until the streams have been admitted (a loaded machine takes a while to set up the calls);
    // two 400-token streams run for seconds, so seeing them end first is the failure.
    let during = await h.info();
    while (during.slotsBusy < 1 && !finished) {
      await new Promise((r) => setTimeout(r, 5));
      during = await h.info();
    }
    await running;
    const after = await h.info();
    assert.ok(during.slotsBusy >= 1, `slotsBusy ${during.slotsBusy} while streaming`);
    assert.equal(after.slotsBusy, 0);
    assert.equal(after.queueLength, 0);
  });
});
