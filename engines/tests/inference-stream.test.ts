// Generate streams a started event, ordered deltas whose ids and text add up,
// and one done with honest usage.
import assert from "node:assert/strict";
import { FinishReason } from "../../control-plane/src/gen/jota/v1/inference";
import { InferenceHarness, chat, prompt, tinyChatArgs, tokens } from "./helpers/inference";

describe("inference: streaming Generate", function () {
  this.timeout(120_000);
  let h: InferenceHarness;
  before(async () => (h = await InferenceHarness.start(tinyChatArgs())));
  after(async () => h?.stop());

  it("streams max_tokens tokens in order, and usage counts them", async () => {
    const r = await h.generate(prompt("Hello, my name is", { maxTokens: 24 }));
    assert.equal(r.done.finishReason, FinishReason.FINISH_REASON_LENGTH);
    assert.equal(r.ids.length, 24);
    assert.equal(r.done.usage?.completionTokens, 24);
    assert.equal(r.done.usage?.promptTokens, r.started.promptTokens);
    assert.ok(r.started.promptTokens > 0);
    assert.ok((r.done.timings?.decodeTokensPerS ?? 0) > 0);
  });

  it("every delta's text is valid UTF-8 and the stream's text is the detokenized ids", async () => {
    const r = await h.generate(prompt("Once upon a time", { maxTokens: 40 }));
    for (const d of r.deltas) assert.equal(Buffer.from(d.text, "utf8").toString("utf8"), d.text);
    const detok = await new Promise<string>((res, rej) =>
      h.client.detokenize({ ids: r.ids, embeddingModel: false }, (e, v) => (e ? rej(e) : res(v!.text))),
    );
    assert.equal(r.text, detok);
  });

  it("applies the model's chat template to messages", async () => {
    const r = await h.generate(chat([{ role: "user", content: "Hi" }], { maxTokens: 4 }));
    const count = await new Promise<number>((res, rej) =>
      h.client.countTokens(
        { messages: [{ role: "user", content: "Hi" }], chatTemplate: "", noGenerationPrompt: false },
        (e, v) => (e ? rej(e) : res(v!.tokens)),
      ),
    );
    assert.equal(r.started.promptTokens, count);
    // ChatML: "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n" is more than the 1-2 tokens of "Hi".
    assert.ok(count > 5, `templated prompt has ${count} tokens`);
  });

  it("greedy decoding is deterministic, from text and from token ids alike", async () => {
    const a = await h.generate(prompt("The capital of France", { maxTokens: 16 }));
    const b = await h.generate(prompt("The capital of France", { maxTokens: 16 }));
    assert.deepEqual(a.ids, b.ids);
    const ids = await new Promise<number[]>((res, rej) =>
      h.client.tokenize(
        { text: "The capital of France", addSpecial: true, parseSpecial: true, embeddingModel: false },
        (e, v) => (e ? rej(e) : res(v!.ids)),
      ),
    );
    const c = await h.generate(tokens(ids, { maxTokens: 16 }));
    assert.deepEqual(c.ids, a.ids);
  });

  it("seeded sampling repeats with the same seed", async () => {
    const sampling = { temperature: 1.0, topK: 40, topP: 0.95, seed: 1234 };
    const a = await h.generate(prompt("Tell me", { maxTokens: 16, sampling }));
    const b = await h.generate(prompt("Tell me", { maxTokens: 16, sampling }));
    assert.deepEqual(a.ids, b.ids);
  });
});
