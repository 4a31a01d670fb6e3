// Constrained output: with a JSON schema the engine's output parses and
// validates even with random weights, sample after sample; with a GBNF
// grammar it matches the grammar.
import assert from "node:assert/strict";
import { FinishReason } from "../../control-plane/src/gen/jota/v1/inference";
import { InferenceHarness, prompt, tinyChatArgs } from "./helpers/inference";

// Bounded everywhere (maxLength, enums, ranges, maxItems) so the grammar
// itself forces the output to end: random weights never choose to stop.
const SCHEMA = {
  type: "object",
  properties: {
    intent: { enum: ["chat", "command", "needs_context"] },
    confidence: { type: "integer", minimum: 0, maximum: 100 },
    device: { type: "string", maxLength: 12 },
    on: { type: "boolean" },
    tags: { type: "array", items: { enum: ["a", "b", "c"] }, maxItems: 3 },
  },
  required: ["intent", "confidence", "device", "on", "tags"],
  additionalProperties: false,
};

// The checks a JSON Schema validator would make for SCHEMA, spelled out.
function validate(v: unknown): string | null {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "not an object";
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).sort();
  if (keys.join() !== "confidence,device,intent,on,tags") return `keys ${keys}`;
  if (!["chat", "command", "needs_context"].includes(o.intent as string)) return `intent ${o.intent}`;
  if (!Number.isInteger(o.confidence) || (o.confidence as number) < 0 || (o.confidence as number) > 100) return `confidence ${o.confidence}`;
  if (typeof o.device !== "string" || [...(o.device as string)].length > 12) return `device ${JSON.stringify(o.device)}`;
  if (typeof o.on !== "boolean") return `on ${o.on}`;
  if (!Array.isArray(o.tags) || o.tags.length > 3 || o.tags.some((t) => !["a", "b", "c"].includes(t))) return `tags ${o.tags}`;
  return null;
}

describe("inference: constrained output", function () {
  this.timeout(900_000);
  let h: InferenceHarness;
  before(async () => (h = await InferenceHarness.start(tinyChatArgs())));
  after(async () => h?.stop());

  it("1,000 samples with a JSON schema all parse and validate", async () => {
    // JOTA_CONSTRAINED_SAMPLES shortens a focused run; the suite always runs 1,000.
    const N = Number(process.env.JOTA_CONSTRAINED_SAMPLES ?? 1000);
    const failures: string[] = [];
    let next = 0;
    // Four workers keep the engine's four slots busy.
    await Promise.all(
      [0, 1, 2, 3].map(async () => {
        while (next < N) {
          const seed = next++;
          const r = await h.generate(
            prompt(`Sample ${seed}:`, {
              maxTokens: 400,
              sampling: { temperature: 1.0, seed },
              constraint: { $case: "jsonSchema", value: JSON.stringify(SCHEMA) },
            }),
          );
          if (r.done.finishReason !== FinishReason.FINISH_REASON_STOP) {
            failures.push(`seed ${seed}: finish ${r.done.finishReason} after ${r.ids.length} tokens: ${r.text}`);
            continue;
          }
          try {
            const err = validate(JSON.parse(r.text));
            if (err) failures.push(`seed ${seed}: ${err}: ${r.text}`);
          } catch (e) {
            failures.push(`seed ${seed}: ${(e as Error).message}: ${r.text}`);
          }
        }
      }),
    );
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${N} samples invalid`);
  });

  it("a GBNF grammar constrains greedy output too", async () => {
    const grammar = 'root ::= "light " ("on" | "off") " in the " room\nroom ::= "kitchen" | "hall" | "salón"';
    for (const p of ["Turn", "¿Qué?", "1 2 3"]) {
      const r = await h.generate(prompt(p, { maxTokens: 50, constraint: { $case: "grammar", value: grammar } }));
      assert.match(r.text, /^light (on|off) in the (kitchen|hall|salón)$/);
      assert.equal(r.done.finishReason, FinishReason.FINISH_REASON_STOP);
    }
  });
});
