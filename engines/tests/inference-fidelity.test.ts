// Jota's engine produces exactly what llama.cpp itself produces on the same
// model: greedy token ids (vs llama-server), the chat template's rendering,
// and embeddings (vs llama-embedding, within 1e-5).
import assert from "node:assert/strict";
import { credentials } from "@grpc/grpc-js";
import { InferenceClient, type EmbedResponse } from "../../control-plane/src/gen/jota/v1/inference";
import { InferenceHarness, chat, prompt, requireFile, startEngine, testModel, tinyChatArgs, unary } from "./helpers/inference";
import { LlamaServer, llamaEmbedding } from "./helpers/reference";

const PROMPTS = [
  "Hello, my name is",
  "The quick brown fox jumps over the lazy dog. Then",
  "def fibonacci(n):\n    ",
  "¿Qué tiempo hace hoy en Madrid? Creo que",
  "1, 2, 3, 4,",
];

interface Completion {
  tokens: number[];
  content: string;
}

describe("inference: fidelity to llama.cpp", function () {
  this.timeout(300_000);
  let h: InferenceHarness;
  let ref: LlamaServer;
  before(async () => {
    [h, ref] = await Promise.all([
      InferenceHarness.start(tinyChatArgs()),
      LlamaServer.start(["-m", requireFile(testModel("tiny-chat.gguf")), "-t", "2", "-c", "1024", "-np", "1", "--no-warmup"]),
    ]);
  });
  after(async () => Promise.all([h?.stop(), ref?.stop()]));

  for (const p of PROMPTS) {
    it(`greedy token ids equal llama-server's for ${JSON.stringify(p.slice(0, 24))}`, async () => {
      const want = await ref.post<Completion>("/completion", { prompt: p, n_predict: 32, temperature: 0, return_tokens: true, cache_prompt: false });
      const got = await h.generate(prompt(p, { maxTokens: 32 }));
      assert.ok(want.tokens.length > 0);
      assert.deepEqual(got.ids, want.tokens);
      assert.equal(got.text, want.content);
    });
  }

  it("renders chat messages exactly as llama.cpp's template engine, and generates the same reply", async () => {
    const messages = [
      { role: "system", content: "You are Jota." },
      { role: "user", content: "Enciende la luz del salón" },
      { role: "assistant", content: "Hecho." },
      { role: "user", content: "Gracias" },
    ];
    const { prompt: rendered } = await ref.post<{ prompt: string }>("/apply-template", { messages });
    const want = await ref.post<Completion>("/completion", { prompt: rendered, n_predict: 24, temperature: 0, return_tokens: true, cache_prompt: false });
    const got = await h.generate(chat(messages, { maxTokens: 24 }));
    const { tokens: refPromptTokens } = await ref.post<{ tokens: number[] }>("/tokenize", { content: rendered, add_special: true, parse_special: true });
    assert.equal(got.started.promptTokens, refPromptTokens.length);
    assert.deepEqual(got.ids, want.tokens);
  });

  describe("embeddings", () => {
    const inputs = ["hello world", "Jota remembers what you tell it.", "La casa está en la playa", "x"];
    let client: InferenceClient;
    let stop: () => Promise<void>;
    before(async () => {
      const e = await startEngine({ kind: "inference", args: ["--embed-model", requireFile(testModel("tiny-embed.gguf")), "--threads", "2"] });
      client = new InferenceClient(e.address!, credentials.createInsecure());
      stop = async () => {
        client.close();
        await e.stop();
      };
    });
    after(async () => stop?.());

    for (const normalize of [false, true]) {
      it(`Embed equals llama-embedding within 1e-5 (normalize=${normalize})`, async () => {
        const want = llamaEmbedding(testModel("tiny-embed.gguf"), inputs, normalize);
        const got = await unary<EmbedResponse>((cb) => client.embed({ inputs, normalize, requestId: "" }, cb));
        assert.equal(got.embeddings.length, inputs.length);
        assert.equal(got.dimensions, want[0]!.length);
        got.embeddings.forEach((e, i) => {
          assert.equal(e.values.length, want[i]!.length);
          const maxDiff = Math.max(...e.values.map((v, k) => Math.abs(v - want[i]![k]!)));
          assert.ok(maxDiff <= 1e-5, `input ${i}: max |diff| ${maxDiff}`);
        });
        if (normalize)
          for (const e of got.embeddings) assert.ok(Math.abs(Math.hypot(...e.values) - 1) < 1e-5);
      });
    }
  });
});
