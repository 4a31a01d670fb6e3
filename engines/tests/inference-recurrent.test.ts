// A recurrent model (tiny-mamba.gguf: a state per sequence instead of a KV
// cache) through the engine's paths that assume a cache can be cut back to
// any position. Its state cannot drop its last tokens, so a slot whose cache
// must be shortened (the same prompt again, a turn that diverges) starts its
// sequence over instead (scheduler.cpp Prepare); a turn that only extends
// the previous one still reuses the state. Mamba, RWKV and the hybrids
// (LFM2, Granite-4, Jamba, Qwen3.5) all take this path.
import assert from "node:assert/strict";
import { FinishReason } from "../../control-plane/src/gen/jota/v1/inference";
import { InferenceHarness, prompt, requireFile, testModel, tokens, type Collected } from "./helpers/inference";
import { LlamaServer } from "./helpers/reference";

interface Completion {
  tokens: number[];
}

describe("inference: a recurrent model (tiny mamba)", function () {
  this.timeout(300_000);
  const model = requireFile(testModel("tiny-mamba.gguf"));
  let h: InferenceHarness;
  let ref: LlamaServer;
  before(async () => {
    [h, ref] = await Promise.all([
      InferenceHarness.start(["--model", model, "--threads", "2", "--slots", "2", "--ctx-size", "1024"]),
      LlamaServer.start(["-m", model, "-t", "2", "-c", "1024", "-np", "1", "--no-warmup"]),
    ]);
  });
  after(async () => Promise.all([h?.stop(), ref?.stop()]));

  const ok = (r: Collected, n: number) => {
    assert.equal(r.done.finishReason, FinishReason.FINISH_REASON_LENGTH, r.done.error);
    assert.equal(r.ids.length, n);
  };

  it("greedy token ids equal llama-server's", async () => {
    for (const p of ["Hello, my name is", "¿Qué tiempo hace hoy en Madrid?"]) {
      const want = await ref.post<Completion>("/completion", { prompt: p, n_predict: 24, temperature: 0, return_tokens: true, cache_prompt: false });
      const got = await h.generate(prompt(p, { maxTokens: 24 }));
      assert.deepEqual(got.ids, want.tokens, p);
    }
  });

  it("the same prompt twice (its slot holds all of it, one token would have to be dropped): both complete alike, and a stream beside them is unharmed", async () => {
    const p = prompt("The quick brown fox jumps over the lazy dog. Then", { maxTokens: 16 });
    const first = await h.generate(p);
    ok(first, 16);
    const beside = h.generate(prompt("Había una vez", { maxTokens: 64 }));
    const again = await h.generate(p);
    ok(again, 16);
    assert.deepEqual(again.ids, first.ids);
    ok(await beside, 64);
    const info = await h.info();
    assert.equal(Number(info.counters!.errors), 0, "no decode step failed");
  });

  it("a session's turn that extends the last one reuses its state; one that diverges starts over and still completes", async () => {
    const t1 = await h.generate(prompt("Turn one of a session about gardens.", { sessionId: "mamba-s", maxTokens: 8 }));
    ok(t1, 8);
    // Turn 2 = turn 1's prompt and reply, then more: only the new tokens are prefilled.
    const p1 = t1.started.promptTokens;
    const t2ids = [...(await tokenIds(h, "Turn one of a session about gardens.")), ...t1.ids, ...(await tokenIds(h, " And now turn two.", false))];
    const t2 = await h.generate(tokens(t2ids, { sessionId: "mamba-s", maxTokens: 8 }));
    ok(t2, 8);
    assert.ok(t2.started.cachedTokens >= p1, `reused ${t2.started.cachedTokens} of the ${p1 + 8} tokens the state holds`);
    // A turn that shares only a prefix (the history was edited): the state cannot be cut back.
    const t3 = await h.generate(prompt("Turn one of a session about something else entirely.", { sessionId: "mamba-s", maxTokens: 8 }));
    ok(t3, 8);
    assert.equal(t3.started.cachedTokens, 0, "started over");
    const want = await ref.post<Completion>("/completion", { prompt: "Turn one of a session about something else entirely.", n_predict: 8, temperature: 0, return_tokens: true, cache_prompt: false });
    assert.deepEqual(t3.ids, want.tokens, "and generated what a fresh sequence does");
  });
});

async function tokenIds(h: InferenceHarness, text: string, addSpecial = true): Promise<number[]> {
  const r = await new Promise<{ ids: number[] }>((resolve, reject) =>
    h.client.tokenize({ text, addSpecial, parseSpecial: true, embeddingModel: false }, (err, res) => (err ? reject(err) : resolve(res))),
  );
  return r.ids;
}
