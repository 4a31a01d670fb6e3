// Thousands of random and malformed requests against one engine: random
// unicode in every string field, absurd numbers, random token ids, grammars,
// schemas, templates and session ids, cancels and tiny deadlines, and raw
// bytes that are no protobuf at all (random, truncated, bit-flipped, strings
// with invalid UTF-8, which a typed client cannot send). Every call must end
// with a gRPC status (no crash, no hang: deadlines everywhere), and afterwards
// the same engine process is SERVING and greedy output is unchanged.
//
// Seeded: JOTA_FUZZ_SEED=<n> replays a run's requests (their interleaving
// depends on timing); JOTA_FUZZ_CASES changes how many.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client, credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import {
  CountTokensRequest,
  DetokenizeRequest,
  EmbedRequest,
  FinishReason,
  GenerateEvent,
  GenerateRequest,
  InfoRequest,
  TokenizeRequest,
  type ChatMessage,
  type InferenceClient,
  type SamplingParams,
} from "../../control-plane/src/gen/jota/v1/inference";
import { checkHealth } from "../../control-plane/src/engines/health";
import { processGone } from "../../control-plane/test/helpers/engines";
import { InferenceHarness, collect, prompt, requireFile, testModel, unary } from "./helpers/inference";
import { prng } from "./helpers/transcription";

const SEED = Number(process.env.JOTA_FUZZ_SEED ?? 20251122);
const CASES = Number(process.env.JOTA_FUZZ_CASES ?? 4000);
const CONCURRENCY = 10; // > slots + queue (8): RESOURCE_EXHAUSTED is part of the mix
const CTX = 256;
const DEADLINE_MS = 30_000; // a call still open after this is a hang

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: Rand, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
const chance = (r: Rand, p: number) => r() < p;
const bytes = (r: Rand, n: number) => Buffer.from(Array.from({ length: n }, () => int(r, 0, 255)));

const SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "\u0000", "\uFEFF", "\u202E", "\r\n", "{{ messages }}", "{% raw %}", "\\", '"', "🦙", "é", "\u0301", "𝔘", "\uFFFD"];

/** Random text: ASCII, any plane (lone surrogates too: the client writes U+FFFD), control bytes, chat tokens. */
function text(r: Rand, max = 64): string {
  const roll = r();
  const n = roll < 0.03 ? int(r, 1000, 20_000) : int(r, 0, max);
  let s = "";
  while (s.length < n) {
    const k = r();
    if (k < 0.5) s += String.fromCharCode(int(r, 0x20, 0x7e));
    else if (k < 0.6) s += String.fromCharCode(int(r, 0, 0x1f));
    else if (k < 0.75) s += String.fromCharCode(int(r, 0x80, 0xffff));
    else if (k < 0.85) s += String.fromCodePoint(int(r, 0x10000, 0x10ffff));
    else s += pick(r, SPECIAL);
  }
  return s;
}

const GRAMMARS = [
  'root ::= "yes" | "no"',
  "root ::= [a-z]+",
  "root ::= [0-9]{1,5}",
  'root ::= "a" root',
  'root ::= ("ab" | "c")* "."',
  "root ::= [^\\n]*",
  'root ::= "\\u00e9" | "\\U0001F600" | "\\x41"',
  "root ::= <[9707]> <[1879]>",
  "root ::= <[999999999]>",
  "root ::= !<[5]> [a-z]",
  "root ::= <|im_end|>",
  'root ::= ""',
  'root ::= "\\x00"',
  "root ::= item{2,4}\nitem ::= [a-c] # comment",
  'root ::= [a]{5,2}',
  'root ::= "x"{0,100000}',
  "root ::= [a]{2}{2}",
  "root ::= " + "(".repeat(600) + '"a"' + ")".repeat(600),
  'root ::= root "a" | "b"',
  "root ::= undefined-rule",
];
const SCHEMAS = [
  '{"type": "boolean"}',
  '{"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string", "maxLength": 3}}, "required": ["a"]}',
  '{"enum": [1, "x", null]}',
  '{"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 3}',
  '{"type": "string", "pattern": "^[a-c]+$"}',
  '{"$ref": "#/$defs/x", "$defs": {"x": {"type": "null"}}}',
  '{"type": "string", "minLength": 5, "maxLength": 2}',
  '{"type": "array", "minItems": 5, "maxItems": 2}',
  '{"type": "integer", "minimum": 5, "maximum": 3}',
  '{"type": "string", "maxLength": 1000000}',
  '{"enum": []}',
  '{"type": "string", "pattern": "(("}',
  '{"$ref": "https://example.com/s.json"}',
  '{"a":' + "[".repeat(5000) + "]".repeat(5000) + "}",
  '{"type": "array", "items": '.repeat(60) + "{}" + "}".repeat(60),
  "[]",
  "null",
];
const TEMPLATES = [
  "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}",
  "{{ raise_exception('nope') }}",
  "{% for %}",
  "{{ messages[0].content ",
  "{# nothing #}",
  "{{ " + "(".repeat(400) + "1" + ")".repeat(400) + " }}",
  "{% if add_generation_prompt %}assistant:{% endif %}",
  "{{ messages | length }}{{ bos_token }}{{ eos_token }}",
];

/** Mutates a string: deletions, insertions, duplications. */
function mutate(r: Rand, s: string): string {
  let out = s;
  for (let k = int(r, 1, 4); k > 0; k--) {
    const at = int(r, 0, out.length);
    const roll = r();
    if (roll < 0.4) out = out.slice(0, at) + out.slice(at + int(r, 1, 5));
    else if (roll < 0.8) out = out.slice(0, at) + pick(r, ["(", ")", "{", "}", "[", "]", '"', "\\", "|", "*", "::=", "{9,1}", text(r, 4)]) + out.slice(at);
    else out = out.slice(0, at) + out.slice(at, at + 20).repeat(int(r, 2, 50)) + out.slice(at);
  }
  return out;
}

function number(r: Rand, normal: () => number): number {
  const roll = r();
  if (roll < 0.9) return normal();
  return pick(r, [NaN, Infinity, -Infinity, -1, 0, 1, -0.0001, 1e30, -1e30, 2 ** 31 - 1, -(2 ** 31), 101, 1.5, 1e-40]);
}
const int32 = (r: Rand, normal: () => number) => {
  const v = number(r, normal);
  return Number.isFinite(v) ? Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.trunc(v))) : 0;
};

function sampling(r: Rand): SamplingParams | undefined {
  if (chance(r, 0.4)) return undefined;
  const s: SamplingParams = {};
  if (chance(r, 0.6)) s.temperature = number(r, () => r() * 2);
  if (chance(r, 0.3)) s.topK = int32(r, () => int(r, 0, 200));
  if (chance(r, 0.3)) s.topP = number(r, () => r());
  if (chance(r, 0.3)) s.minP = number(r, () => r() * 0.3);
  if (chance(r, 0.2)) s.repeatPenalty = number(r, () => 1 + r());
  if (chance(r, 0.2)) s.repeatLastN = int32(r, () => int(r, -1, 128));
  if (chance(r, 0.2)) s.presencePenalty = number(r, () => r() * 2 - 1);
  if (chance(r, 0.2)) s.frequencyPenalty = number(r, () => r() * 2 - 1);
  if (chance(r, 0.5)) s.seed = int(r, 0, 2 ** 32 - 1);
  return s;
}

const SESSIONS = Array.from({ length: 12 }, (_, i) => `fuzz-session-${i}`);

function messages(r: Rand): ChatMessage[] {
  return Array.from({ length: chance(r, 0.05) ? 0 : int(r, 1, 5) }, () => ({
    role: chance(r, 0.96) ? pick(r, ["system", "user", "assistant", "tool"]) : text(r, 12),
    content: text(r),
  }));
}

function generateRequest(r: Rand, vocab: number): GenerateRequest {
  const roll = r();
  let input: GenerateRequest["input"];
  if (roll < 0.4) input = { $case: "messages", value: { items: messages(r) } };
  else if (roll < 0.75) input = { $case: "prompt", value: text(r, 200) };
  else if (roll < 0.97) {
    const n = chance(r, 0.05) ? int(r, CTX - 2, CTX + 50) : int(r, 0, 60);
    const ids = Array.from({ length: n }, () => (chance(r, 0.98) ? int(r, 0, vocab - 1) : pick(r, [-1, vocab, vocab + 1, 2 ** 31 - 1, -(2 ** 31)])));
    input = { $case: "promptTokens", value: { ids } };
  }
  let constraint: GenerateRequest["constraint"];
  const c = r();
  if (c < 0.1) constraint = { $case: "grammar", value: chance(r, 0.6) ? pick(r, GRAMMARS) : mutate(r, pick(r, GRAMMARS)) };
  else if (c < 0.18) constraint = { $case: "jsonSchema", value: chance(r, 0.6) ? pick(r, SCHEMAS) : mutate(r, pick(r, SCHEMAS)) };
  else if (c < 0.2) constraint = chance(r, 0.5) ? { $case: "grammar", value: text(r, 100) } : { $case: "jsonSchema", value: text(r, 100) };
  const m = r();
  // Mostly short; a few run until the context is full (0, or huge: clamped, LENGTH).
  const maxTokens = m < 0.86 ? int(r, 1, 8) : m < 0.875 ? 0 : m < 0.89 ? 2 ** 31 - 1 : m < 0.91 ? -int(r, 1, 2 ** 31) : int(r, 9, 32);
  return {
    input,
    sessionId: chance(r, 0.6) ? "" : chance(r, 0.8) ? pick(r, SESSIONS) : text(r, chance(r, 0.05) ? 400 : 40),
    sampling: sampling(r),
    maxTokens,
    stop: chance(r, 0.7) ? [] : Array.from({ length: chance(r, 0.03) ? 17 : int(r, 1, 4) }, () => (chance(r, 0.02) ? "s".repeat(257) : text(r, 4))),
    constraint,
    chatTemplate: chance(r, 0.95) ? "" : chance(r, 0.6) ? pick(r, TEMPLATES) : mutate(r, pick(r, TEMPLATES)),
    noGenerationPrompt: chance(r, 0.2),
    requestId: chance(r, 0.5) ? "" : text(r, 30),
  };
}

const METHODS = ["Generate", "Embed", "Tokenize", "Detokenize", "CountTokens", "Info"] as const;
type Method = (typeof METHODS)[number];

/** A valid encoding of a random request for `method`, with `marker` (if given) inside one string field. */
function encoded(r: Rand, method: Method, vocab: number, marker?: string): Buffer {
  const s = (t: string) => (marker && chance(r, 0.5) ? marker : t);
  switch (method) {
    case "Generate": {
      const req = generateRequest(r, vocab);
      if (marker) {
        const where = int(r, 0, 4);
        if (where === 0) req.input = { $case: "prompt", value: marker };
        else if (where === 1) req.input = { $case: "messages", value: { items: [{ role: s("user"), content: marker }] } };
        else if (where === 2) req.sessionId = marker;
        else if (where === 3) req.stop = [marker];
        else req.constraint = { $case: "grammar", value: marker };
      }
      return Buffer.from(GenerateRequest.encode(req).finish());
    }
    case "Embed":
      return Buffer.from(EmbedRequest.encode({ inputs: [s(text(r)), text(r)], normalize: chance(r, 0.5), requestId: "" }).finish());
    case "Tokenize":
      return Buffer.from(TokenizeRequest.encode({ text: marker ?? text(r), addSpecial: chance(r, 0.5), parseSpecial: chance(r, 0.5), embeddingModel: chance(r, 0.3) }).finish());
    case "Detokenize":
      return Buffer.from(DetokenizeRequest.encode({ ids: Array.from({ length: int(r, 0, 20) }, () => int(r, 0, vocab - 1)), embeddingModel: chance(r, 0.3) }).finish());
    case "CountTokens":
      return Buffer.from(CountTokensRequest.encode({ messages: [{ role: "user", content: marker ?? text(r) }], chatTemplate: "", noGenerationPrompt: false }).finish());
    case "Info":
      return Buffer.from(InfoRequest.encode({}).finish());
  }
}

/** Bytes that are not a valid request: random, truncated, bit-flipped, or a string field with invalid UTF-8. */
function malformed(r: Rand, method: Method, vocab: number): Buffer {
  const roll = r();
  if (roll < 0.25) return bytes(r, int(r, 0, 300));
  if (roll < 0.5) {
    const b = encoded(r, method, vocab);
    return b.subarray(0, int(r, 0, Math.max(0, b.length - 1)));
  }
  if (roll < 0.7) {
    const b = Buffer.from(encoded(r, method, vocab));
    for (let k = int(r, 1, 6); k > 0 && b.length; k--) b[int(r, 0, b.length - 1)] = int(r, 0, 255);
    return b;
  }
  // Invalid UTF-8 of the marker's length, so every length prefix stays right.
  const marker = "\u0001MARKER\u0001";
  const b = Buffer.from(encoded(r, method, vocab, marker));
  const bad = [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80], [0xfe]];
  let at = b.indexOf(marker, 0, "latin1");
  if (at < 0) return bytes(r, 16);
  for (; at >= 0; at = b.indexOf(marker, at + 1, "latin1")) {
    const fill: number[] = [];
    while (fill.length < marker.length) fill.push(...pick(r, bad));
    Buffer.from(fill.slice(0, marker.length)).copy(b, at);
  }
  return b;
}

interface Outcome {
  code: number;
  details: string;
  note?: string; // a broken invariant
}

describe("inference fuzz", function () {
  this.timeout(300_000);
  let h: InferenceHarness;
  let raw: Client;
  let stateDir: string;
  let vocab: number;

  before(async () => {
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "jota-inf-fuzz-"));
    h = await InferenceHarness.start([
      "--model", requireFile(testModel("tiny-chat.gguf")),
      "--embed-model", requireFile(testModel("tiny-embed.gguf")),
      "--threads", "2", "--slots", "4", "--ctx-size", String(CTX), "--queue-max", "4",
      "--state-dir", stateDir,
    ]);
    raw = new Client(h.engine.address!, credentials.createInsecure());
    vocab = (await h.info()).chatModel!.vocabSize;
  });
  after(async () => {
    raw?.close();
    await h?.stop();
    if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
  });

  /** A typed Generate; checks the stream's shape and, when OK, its accounting. */
  async function typedGenerate(client: InferenceClient, req: GenerateRequest, deadlineMs: number, cancelAfterMs: number): Promise<Outcome> {
    const call = client.generate(req, new Metadata(), { deadline: Date.now() + deadlineMs });
    if (cancelAfterMs >= 0) setTimeout(() => call.cancel(), cancelAfterMs);
    try {
      const res = await collect(call);
      const u = res.done.usage!;
      let note: string | undefined;
      // A grammar can be unsatisfiable after some text (<|im_end|> is an
      // end-of-generation token, which llama.cpp's grammar never matches):
      // that request, and only it, ends with ERROR.
      const unsatisfiable =
        req.constraint && res.done.finishReason === FinishReason.FINISH_REASON_ERROR && res.done.error === "sampling failed: the grammar allows no token at this point";
      if (![FinishReason.FINISH_REASON_STOP, FinishReason.FINISH_REASON_LENGTH].includes(res.done.finishReason) && !unsatisfiable)
        note = `finished ${FinishReason[res.done.finishReason]}: ${res.done.error}`;
      else if (req.maxTokens > 0 && u.completionTokens > req.maxTokens) note = `${u.completionTokens} tokens > max_tokens ${req.maxTokens}`;
      else if (u.promptTokens + u.completionTokens > CTX) note = `prompt + completion ${u.promptTokens}+${u.completionTokens} > context ${CTX}`;
      else if (req.maxTokens === 0 || req.maxTokens >= CTX) {
        if (res.done.finishReason === FinishReason.FINISH_REASON_LENGTH && u.promptTokens + u.completionTokens !== CTX)
          note = `LENGTH before the context was full (${u.promptTokens}+${u.completionTokens})`;
      }
      for (const s of req.stop) if (s && !s.includes("\uFFFD") && res.text.includes(s)) note = `stop string ${JSON.stringify(s)} was streamed`;
      return { code: status.OK, details: "", note };
    } catch (e) {
      const err = e as ServiceError;
      if (typeof err.code !== "number") return { code: -1, details: String(e), note: `no gRPC status: ${String(e)}` };
      return { code: err.code, details: err.details };
    }
  }

  function rawCall(method: Method, body: Buffer, deadlineMs: number): Promise<Outcome> {
    const pathName = `/jota.v1.Inference/${method}`;
    const md = new Metadata();
    const options = { deadline: Date.now() + deadlineMs };
    return new Promise((resolve) => {
      if (method === "Generate") {
        const call = raw.makeServerStreamRequest(pathName, (b: Buffer) => b, (b: Buffer) => b, body, md, options);
        let note: string | undefined;
        call.on("data", (b: Buffer) => {
          try {
            GenerateEvent.decode(b);
          } catch (e) {
            note = `undecodable event: ${String(e)}`;
          }
        });
        call.on("error", () => {}); // the status below carries it
        call.on("status", (s: { code: number; details: string }) => resolve({ code: s.code, details: s.details, note }));
      } else {
        raw.makeUnaryRequest(pathName, (b: Buffer) => b, (b: Buffer) => b, body, md, options, (err) =>
          resolve(err ? { code: err.code, details: err.details } : { code: status.OK, details: "" }),
        );
      }
    });
  }

  async function typedUnary(r: Rand, deadlineMs: number): Promise<Outcome> {
    const c = h.client;
    const md = new Metadata();
    const opts = { deadline: Date.now() + deadlineMs };
    const method = pick(r, ["Embed", "Tokenize", "Detokenize", "CountTokens", "Info"] as const);
    let p: Promise<unknown>;
    if (method === "Embed") {
      const inputs = Array.from({ length: chance(r, 0.05) ? pick(r, [0, 1025]) : int(r, 1, 4) }, () => (chance(r, 0.05) ? "word ".repeat(2000) : text(r)));
      p = unary((cb) => c.embed({ inputs, normalize: chance(r, 0.5), requestId: text(r, 10) }, md, opts, cb));
    } else if (method === "Tokenize") {
      p = unary((cb) => c.tokenize({ text: text(r, 500), addSpecial: chance(r, 0.5), parseSpecial: chance(r, 0.5), embeddingModel: chance(r, 0.3) }, md, opts, cb));
    } else if (method === "Detokenize") {
      const emb = chance(r, 0.3);
      const ids = Array.from({ length: int(r, 0, 80) }, () => (chance(r, 0.97) ? int(r, 0, emb ? 30_000 : vocab - 1) : int(r, -(2 ** 31), 2 ** 31 - 1)));
      p = unary((cb) => c.detokenize({ ids, embeddingModel: emb }, md, opts, cb));
    } else if (method === "CountTokens") {
      const chatTemplate = chance(r, 0.8) ? "" : mutate(r, pick(r, TEMPLATES));
      p = unary((cb) => c.countTokens({ messages: messages(r), chatTemplate, noGenerationPrompt: chance(r, 0.3) }, md, opts, cb));
    } else {
      p = unary((cb) => c.info({}, md, opts, cb));
    }
    return p.then(
      () => ({ code: status.OK, details: "" }),
      (e: ServiceError) => ({ code: e.code, details: e.details }),
    );
  }

  it(`${CASES} random and malformed requests (seed ${SEED}; JOTA_FUZZ_SEED to replay): a status for each, the engine unharmed`, async () => {
    console.log(`      fuzz seed ${SEED} (JOTA_FUZZ_SEED=${SEED} to replay), ${CASES} cases`);
    const pid = h.engine.pid!;
    const greedy = prompt("The capital of France", { maxTokens: 16 });
    const before = (await h.generate(greedy)).ids;
    assert.equal(before.length, 16);

    // The cases are drawn up front, in order, so a seed always gives the same requests.
    const r = prng(SEED);
    type Case = { kind: string; run: () => Promise<Outcome>; tolerate: Set<number> };
    const cases: Case[] = [];
    const base = new Set([status.OK, status.INVALID_ARGUMENT, status.RESOURCE_EXHAUSTED]);
    for (let i = 0; i < CASES; i++) {
      // A few calls with a tiny deadline or a cancel: DEADLINE_EXCEEDED / CANCELLED are theirs only.
      const short = chance(r, 0.02);
      const deadlineMs = short ? int(r, 1, 40) : DEADLINE_MS;
      const cancelAfter = !short && chance(r, 0.03) ? int(r, 0, 40) : -1;
      const tolerate = new Set(base);
      if (short) tolerate.add(status.DEADLINE_EXCEEDED);
      if (cancelAfter >= 0) tolerate.add(status.CANCELLED);
      const roll = r();
      if (roll < 0.5) {
        const req = generateRequest(r, vocab);
        cases.push({ kind: "Generate", run: () => typedGenerate(h.client, req, deadlineMs, cancelAfter), tolerate });
      } else if (roll < 0.7) {
        const rr = prng(int(r, 0, 2 ** 31)); // its own stream: the arguments are drawn when it runs
        cases.push({ kind: "unary", run: () => typedUnary(rr, deadlineMs), tolerate });
      } else {
        const method = pick(r, METHODS);
        const body = malformed(r, method, vocab);
        // grpc's own answer to a request that does not parse is INTERNAL
        // ("Error parsing request proto" in gRPC's status-code table).
        tolerate.add(status.INTERNAL);
        cases.push({ kind: `raw ${method}`, run: () => rawCall(method, body, deadlineMs), tolerate });
      }
    }

    const t0 = Date.now();
    const seen = new Map<string, number>();
    const problems: string[] = [];
    let next = 0;
    const worker = async () => {
      while (next < cases.length) {
        const i = next++;
        const c = cases[i];
        const o = await c.run();
        const key = `${c.kind.split(" ")[0]} ${status[o.code] ?? o.code}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
        if (!c.tolerate.has(o.code) || o.note)
          problems.push(`case ${i} (${c.kind}): ${status[o.code] ?? o.code} ${JSON.stringify(o.details.slice(0, 200))}${o.note ? " - " + o.note : ""}`);
        // Refused for capacity: back off a little, as a real client would,
        // so the mix stays mostly requests that get served.
        if (o.code === status.RESOURCE_EXHAUSTED) await new Promise((res) => setTimeout(res, 30));
        if (i % 250 === 0) assert.equal(processGone(pid), false, `the engine died (by case ${i}, seed ${SEED})`);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const seconds = (Date.now() - t0) / 1000;
    console.log(`      ${CASES} calls in ${seconds.toFixed(1)} s:`, Object.fromEntries([...seen].sort()));

    assert.deepEqual(problems.slice(0, 20), [], `seed ${SEED}: ${problems.length} calls broke the rules`);
    // The fuzzer reached every layer: validation, generation, the queue bound, grpc's parser.
    for (const key of ["Generate OK", "Generate INVALID_ARGUMENT", "unary OK", "unary INVALID_ARGUMENT", "raw INTERNAL", "raw OK"])
      assert.ok((seen.get(key) ?? 0) > 0, `no "${key}" outcome (seed ${SEED})`);

    // Same process, never restarted, SERVING, idle, and it still computes the same thing.
    assert.equal(h.engine.pid, pid);
    assert.equal(processGone(pid), false);
    assert.equal(h.engine.state, "ready");
    assert.equal(h.engine.restartCount, 0);
    assert.equal(await checkHealth(h.engine.address!, "jota.v1.Inference"), "SERVING");
    assert.deepEqual((await h.generate(greedy)).ids, before);
    // Cancelled calls are noticed by the engine within milliseconds, not at once.
    let info = await h.info();
    for (let i = 0; (info.slotsBusy || info.queueLength) && i < 100; i++) {
      await new Promise((res) => setTimeout(res, 20));
      info = await h.info();
    }
    assert.equal(info.ready, true);
    assert.equal(info.queueLength, 0);
    assert.equal(info.slotsBusy, 0);
    assert.ok(info.counters!.requests > 0);
    assert.equal((await unary<{ embeddings: unknown[] }>((cb) => h.client.embed({ inputs: ["still here"], normalize: true, requestId: "" }, cb))).embeddings.length, 1);
  });
});
