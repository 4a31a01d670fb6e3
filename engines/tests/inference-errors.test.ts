// Bad input gets the exact gRPC status and a message that says what is wrong,
// never a crash or a hang: every error issue 3 lists, against real engines
// (a chat engine with a bearer token, an embedding-only engine, a one-slot
// engine with a one-request queue, a chat model without a chat template).
// After each test every engine is still up, SERVING, and the chat engine's
// greedy output is unchanged.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { credentials, Metadata, status, type CallOptions, type ServiceError } from "@grpc/grpc-js";
import {
  FinishReason,
  InferenceClient,
  type ChatMessage,
  type CountTokensResponse,
  type DetokenizeResponse,
  type EmbedResponse,
  type GenerateEvent,
  type GenerateRequest,
  type InferenceInfo,
  type SamplingParams,
  type TokenizeResponse,
} from "../../control-plane/src/gen/jota/v1/inference";
import { checkHealth } from "../../control-plane/src/engines/health";
import type { EngineProcess } from "../../control-plane/src/index";
import { bearer, buildBin, processGone } from "../../control-plane/test/helpers/engines";
import {
  chat,
  collect,
  prompt,
  request,
  requireFile,
  startEngine,
  testModel,
  tinyChatArgs,
  tokens,
  unary,
} from "./helpers/inference";

const TOKEN = "inf-" + Math.random().toString(36).slice(2);
const CTX = 1024;
/** Every call has a deadline: a hang fails the test instead of stalling it. */
const opts = (ms = 20_000): Partial<CallOptions> => ({ deadline: Date.now() + ms });

/** One engine and its client; `md` is what every call carries (the bearer token, if any). */
class Engine {
  constructor(
    readonly proc: EngineProcess,
    readonly client: InferenceClient,
    readonly md: () => Metadata,
  ) {}
  static async start(args: string[], token?: string) {
    const proc = await startEngine({ kind: "inference", args, token });
    const client = new InferenceClient(proc.address!, credentials.createInsecure());
    return new Engine(proc, client, () => (token ? bearer(token) : new Metadata()));
  }
  generate(req: GenerateRequest, md = this.md()) {
    return collect(this.client.generate(req, md, opts()));
  }
  embed(inputs: string[], md = this.md()) {
    return unary<EmbedResponse>((cb) => this.client.embed({ inputs, normalize: true, requestId: "" }, md, opts(), cb));
  }
  tokenize(text: string, embeddingModel = false, md = this.md()) {
    return unary<TokenizeResponse>((cb) =>
      this.client.tokenize({ text, addSpecial: true, parseSpecial: true, embeddingModel }, md, opts(), cb),
    );
  }
  detokenize(ids: number[], embeddingModel = false, md = this.md()) {
    return unary<DetokenizeResponse>((cb) => this.client.detokenize({ ids, embeddingModel }, md, opts(), cb));
  }
  countTokens(messages: ChatMessage[], chatTemplate = "", md = this.md()) {
    return unary<CountTokensResponse>((cb) =>
      this.client.countTokens({ messages, chatTemplate, noGenerationPrompt: false }, md, opts(), cb),
    );
  }
  info(md = this.md()) {
    return unary<InferenceInfo>((cb) => this.client.info({}, md, opts(), cb));
  }
  async assertAlive(pid: number) {
    assert.equal(this.proc.pid, pid, "the engine was restarted");
    assert.equal(processGone(pid), false, "the engine died");
    assert.equal(this.proc.state, "ready");
    assert.equal(await checkHealth(this.proc.address!, "jota.v1.Inference"), "SERVING");
  }
  async stop() {
    this.client.close();
    await this.proc.stop();
  }
}

/** The call fails with exactly `code`, and its message matches every pattern. */
async function fails(p: Promise<unknown>, code: status, ...messages: (RegExp | string)[]) {
  await assert.rejects(p, (e: ServiceError) => {
    assert.equal(e.code, code, `expected ${status[code]}, got ${status[e.code]}: ${e.details}`);
    for (const m of messages) {
      if (typeof m === "string") assert.equal(e.details, m);
      else assert.match(e.details, m);
    }
    return true;
  });
}

const hi = (extra: Partial<GenerateRequest> = {}) => prompt("Hello", { maxTokens: 2, ...extra });
const grammar = (g: string, extra: Partial<GenerateRequest> = {}) =>
  hi({ constraint: { $case: "grammar", value: g }, ...extra });
const schema = (s: string) => hi({ constraint: { $case: "jsonSchema", value: s } });
const sampling = (s: SamplingParams) => hi({ sampling: s });
const user = (content: string): ChatMessage => ({ role: "user", content });

/**
 * tiny-chat.gguf with its `tokenizer.chat_template` key renamed (same length,
 * so every offset in the file stays valid): a real chat model without a template.
 */
function modelWithoutTemplate(dir: string): string {
  const buf = fs.readFileSync(requireFile(testModel("tiny-chat.gguf")));
  const key = Buffer.from("tokenizer.chat_template");
  let at = -1;
  for (let from = 0; (at = buf.indexOf(key, from)) >= 0; from = at + 1) {
    // A GGUF key is a u64 length followed by the bytes, and this key is exactly the name.
    if (at >= 8 && buf.readBigUInt64LE(at - 8) === BigInt(key.length)) break;
  }
  assert.ok(at >= 0, "tiny-chat.gguf has no tokenizer.chat_template key");
  buf.write("tokenizer.xhat_template", at, "latin1");
  const out = path.join(dir, "tiny-chat-no-template.gguf");
  fs.writeFileSync(out, buf);
  return out;
}

describe("inference errors (bad input never crashes or hangs the engine)", function () {
  this.timeout(120_000);
  let tmp: string;
  let main: Engine; // tiny chat model, bearer token, 4 slots of 1024
  let embedOnly: Engine; // only the embedding model
  let noTemplate: Engine; // a chat model without a chat template
  const pids = new Map<Engine, number>();
  let vocab: number;
  let baseline: number[];
  const greedy = prompt("The capital of France", { maxTokens: 8 });

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "jota-inf-errors-"));
    [main, embedOnly, noTemplate] = await Promise.all([
      Engine.start(tinyChatArgs(), TOKEN),
      Engine.start(["--embed-model", requireFile(testModel("tiny-embed.gguf")), "--threads", "2"]),
      Engine.start(["--model", modelWithoutTemplate(tmp), "--threads", "2", "--slots", "1", "--ctx-size", "256"]),
    ]);
    for (const e of [main, embedOnly, noTemplate]) pids.set(e, e.proc.pid!);
    vocab = (await main.info()).chatModel!.vocabSize;
    baseline = (await main.generate(greedy)).ids;
    assert.equal(baseline.length, 8);
  });
  after(async () => {
    await Promise.all([main, embedOnly, noTemplate].map((e) => e?.stop()));
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });
  afterEach(async () => {
    // Whatever the last test sent: same processes, SERVING, same greedy output.
    for (const [e, pid] of pids) await e.assertAlive(pid);
    assert.deepEqual((await main.generate(greedy)).ids, baseline);
    assert.equal((await embedOnly.embed(["still here"])).embeddings.length, 1);
  });

  describe("bearer token", () => {
    const none = () => new Metadata();
    const wrong = () => bearer(TOKEN + "x");
    const basic = () => {
      const md = new Metadata();
      md.set("authorization", `Basic ${TOKEN}`);
      return md;
    };
    const cases: [string, () => Metadata, RegExp][] = [
      ["missing", none, /^missing 'authorization: Bearer <token>' metadata$/],
      ["wrong", wrong, /^invalid engine token$/],
      ["not a bearer token", basic, /^authorization metadata must be 'Bearer <token>'$/],
    ];
    for (const [what, md, message] of cases) {
      it(`${what}: UNAUTHENTICATED on every RPC, before any other check`, async () => {
        const e = main;
        // Each request would otherwise succeed or fail for another reason
        // (this engine has no embedding model): auth comes first.
        await fails(e.generate(greedy, md()), status.UNAUTHENTICATED, message);
        await fails(e.generate(request({}), md()), status.UNAUTHENTICATED, message);
        await fails(e.embed(["x"], md()), status.UNAUTHENTICATED, message);
        await fails(e.tokenize("x", false, md()), status.UNAUTHENTICATED, message);
        await fails(e.detokenize([1, 2], false, md()), status.UNAUTHENTICATED, message);
        await fails(e.detokenize([-1], false, md()), status.UNAUTHENTICATED, message);
        await fails(e.countTokens([user("x")], "", md()), status.UNAUTHENTICATED, message);
        await fails(e.info(md()), status.UNAUTHENTICATED, message);
      });
    }

    it("grpc.health.v1 Check stays open without a token; the right token passes", async () => {
      assert.equal(await checkHealth(main.proc.address!, "jota.v1.Inference"), "SERVING");
      assert.equal(await checkHealth(main.proc.address!, ""), "SERVING");
      assert.equal((await main.info()).ready, true);
      assert.ok((await main.tokenize("hello")).ids.length > 0);
      assert.ok((await main.countTokens([user("hello")])).tokens > 0);
      assert.equal((await main.detokenize((await main.tokenize("hello")).ids)).text, "hello");
    });
  });

  describe("Generate: the prompt and the context", () => {
    it("a prompt longer than the context: INVALID_ARGUMENT naming both numbers", async () => {
      const ids = (await main.tokenize("hello ")).ids;
      await fails(
        main.generate(tokens(Array(1500).fill(ids[0]))),
        status.INVALID_ARGUMENT,
        "the prompt has 1500 tokens; the context holds 1024 per request (prompt + completion)",
      );
      // The same from text and from chat messages, counted after tokenization / the template.
      const text = "hello ".repeat(3000);
      const n = (await main.tokenize(text)).ids.length;
      assert.ok(n > CTX);
      await fails(main.generate(prompt(text)), status.INVALID_ARGUMENT, new RegExp(`^the prompt has ${n} tokens; the context holds ${CTX} `));
      const m = (await main.countTokens([user(text)])).tokens;
      await fails(main.generate(chat([user(text)])), status.INVALID_ARGUMENT, new RegExp(`^the prompt has ${m} tokens; the context holds ${CTX} `));
    });

    it("the context must leave room for one token: 1024 prompt tokens are refused, 1023 give one token (LENGTH)", async () => {
      const id = (await main.tokenize("hello")).ids[0];
      await fails(main.generate(tokens(Array(CTX).fill(id))), status.INVALID_ARGUMENT, /^the prompt has 1024 tokens; the context holds 1024 /);
      const r = await main.generate(tokens(Array(CTX - 1).fill(id), { maxTokens: 0 }));
      assert.equal(r.done.finishReason, FinishReason.FINISH_REASON_LENGTH);
      assert.equal(r.done.usage?.completionTokens, 1);
    });

    it("a huge max_tokens is clamped by the context: finish LENGTH when prompt + completion fill it", async () => {
      const r = await main.generate(tokens(Array(CTX - 9).fill((await main.tokenize("hello")).ids[0]), { maxTokens: 2 ** 31 - 1 }));
      assert.equal(r.done.finishReason, FinishReason.FINISH_REASON_LENGTH);
      assert.equal(r.done.usage!.promptTokens + r.done.usage!.completionTokens, CTX);
    });

    it("negative max_tokens: INVALID_ARGUMENT", async () => {
      for (const maxTokens of [-1, -(2 ** 31)])
        await fails(main.generate(hi({ maxTokens })), status.INVALID_ARGUMENT, "max_tokens must be >= 0 (0 = until the context is full)");
    });

    it("no input, an empty prompt, no prompt tokens, no messages: INVALID_ARGUMENT", async () => {
      await fails(main.generate(request({})), status.INVALID_ARGUMENT, "one of messages, prompt or prompt_tokens is required");
      await fails(main.generate(prompt("")), status.INVALID_ARGUMENT, "the prompt is empty");
      await fails(main.generate(tokens([])), status.INVALID_ARGUMENT, "the prompt is empty");
      await fails(main.generate(chat([])), status.INVALID_ARGUMENT, "messages is empty");
      await fails(main.countTokens([]), status.INVALID_ARGUMENT, "messages is empty");
      // A template that renders nothing leaves nothing to generate from.
      await fails(main.generate(chat([user("hi")], { chatTemplate: "{# nothing #}" })), status.INVALID_ARGUMENT, "the prompt is empty");
    });

    it("token ids outside the vocabulary: INVALID_ARGUMENT naming the index, the id and the vocabulary size", async () => {
      await fails(
        main.generate(tokens([1, 2, vocab])),
        status.INVALID_ARGUMENT,
        `prompt_tokens.ids[2] = ${vocab} is not a token id (vocabulary has ${vocab})`,
      );
      await fails(main.generate(tokens([-1])), status.INVALID_ARGUMENT, `prompt_tokens.ids[0] = -1 is not a token id (vocabulary has ${vocab})`);
      await fails(main.generate(tokens([5, 2 ** 31 - 1])), status.INVALID_ARGUMENT, /^prompt_tokens\.ids\[1\] = 2147483647 is not a token id/);
      await fails(main.detokenize([0, vocab + 7]), status.INVALID_ARGUMENT, `ids[1] = ${vocab + 7} is not a token id (vocabulary has ${vocab})`);
      await fails(main.detokenize([-(2 ** 31)]), status.INVALID_ARGUMENT, `ids[0] = -2147483648 is not a token id (vocabulary has ${vocab})`);
      // The last id is fine.
      assert.equal(typeof (await main.detokenize([vocab - 1])).text, "string");
    });
  });

  describe("Generate: chat messages and templates", () => {
    it("an unknown role: INVALID_ARGUMENT naming the message and the role", async () => {
      await fails(
        main.generate(chat([user("hi"), { role: "wizard", content: "x" }])),
        status.INVALID_ARGUMENT,
        "messages[1].role must be system, user, assistant or tool (got 'wizard')",
      );
      await fails(main.generate(chat([{ role: "User", content: "x" }])), status.INVALID_ARGUMENT, /^messages\[0\]\.role .*\(got 'User'\)$/);
      await fails(main.generate(chat([{ role: "", content: "x" }])), status.INVALID_ARGUMENT, /^messages\[0\]\.role .*\(got ''\)$/);
      await fails(main.countTokens([{ role: "robot", content: "x" }]), status.INVALID_ARGUMENT, /^messages\[0\]\.role .*\(got 'robot'\)$/);
      // A huge role is echoed only in part (a 100 KB status message once hung the call).
      await fails(main.generate(chat([{ role: "é".repeat(50_000), content: "x" }])), status.INVALID_ARGUMENT, /^messages\[0\]\.role .*\(got 'é{32}\.\.\.'\)$/);
    });

    it("a chat_template override that does not parse: INVALID_ARGUMENT with the Jinja parser's message", async () => {
      const bad = "{% for %}";
      const message = /^chat_template: the chat template could not be parsed: .*\S/;
      // (llama.cpp rethrows the parser's error sliced to "std::exception"; the engine recovers the text.)
      await fails(main.generate(chat([user("hi")], { chatTemplate: bad })), status.INVALID_ARGUMENT, message, /: Unexpected token: %\}/);
      await fails(main.countTokens([user("hi")], bad), status.INVALID_ARGUMENT, message, /: Unexpected token: %\}/);
      await fails(main.generate(chat([user("hi")], { chatTemplate: "{{ messages[0].content " })), status.INVALID_ARGUMENT, message, /Expected \}\}/);
      // 10,000 nested brackets overflowed the Jinja parser's stack (SIGSEGV).
      const deep = "{{ " + "(".repeat(10_000) + "1" + ")".repeat(10_000) + " }}";
      await fails(main.generate(chat([user("hi")], { chatTemplate: deep })), status.INVALID_ARGUMENT, "chat_template: brackets are nested deeper than 256 levels");
      await fails(main.countTokens([user("hi")], "x".repeat(65 * 1024)), status.INVALID_ARGUMENT, "chat_template is larger than 64 KiB");
    });

    it("a chat_template override that fails on the messages: INVALID_ARGUMENT with the template's error", async () => {
      const raising = "{{ raise_exception('no tools here') }}";
      await fails(main.generate(chat([user("hi")], { chatTemplate: raising })), status.INVALID_ARGUMENT, /^the chat template failed on these messages: .*no tools here/s);
      await fails(main.countTokens([user("hi")], raising), status.INVALID_ARGUMENT, /^the chat template failed on these messages: .*no tools here/s);
    });

    it("a model with no chat template: FAILED_PRECONDITION for messages; a raw prompt or a template override works", async () => {
      const info = await noTemplate.info();
      assert.equal(info.chatModel?.hasChatTemplate, false);
      const message = "the model has no chat template: pass chat_template, or send a raw prompt";
      await fails(noTemplate.generate(chat([user("hi")], { maxTokens: 2 })), status.FAILED_PRECONDITION, message);
      await fails(noTemplate.countTokens([user("hi")]), status.FAILED_PRECONDITION, message);
      // Message validation still comes first.
      await fails(noTemplate.generate(chat([])), status.INVALID_ARGUMENT, "messages is empty");
      assert.equal((await noTemplate.generate(prompt("hi", { maxTokens: 2 }))).ids.length, 2);
      const tmpl = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
      assert.equal((await noTemplate.generate(chat([user("hi")], { maxTokens: 2, chatTemplate: tmpl }))).ids.length, 2);
      assert.equal((await noTemplate.countTokens([user("hi")], tmpl)).tokens, (await noTemplate.tokenize("user: hi\nassistant:")).ids.length);
    });
  });

  describe("Generate: constrained output", () => {
    it("invalid GBNF: INVALID_ARGUMENT with the parser's message", async () => {
      const cases: [string, RegExp][] = [
        ['root ::= "a" | (', /^invalid grammar: expecting '\)' at$/],
        ["root ::= foo", /^invalid grammar: Undefined rule identifier 'foo'$/],
        ['root = "a"', /^invalid grammar: expecting ::= at = "a"$/],
        ["root ::= [a-", /^invalid grammar: unexpected end of input$/],
        ['root ::= "abc', /^invalid grammar: unexpected end of input$/],
        ['x ::= "a"', /^invalid grammar: grammar does not contain a 'root' symbol$/],
        ['root ::= root "a" | "b"', /^invalid grammar: unsupported grammar, left recursion detected/],
      ];
      for (const [g, message] of cases) await fails(main.generate(grammar(g)), status.INVALID_ARGUMENT, message);
      await fails(main.generate(grammar("")), status.INVALID_ARGUMENT, "grammar is empty");
      await fails(main.generate(grammar("root ::= " + '"a" '.repeat(20_000))), status.INVALID_ARGUMENT, "grammar is larger than 64 KiB");
      // A parser message that quotes the rest of a long grammar is cut short, not a 60 KB trailer.
      await fails(main.generate(grammar("root ::= !" + "x".repeat(60_000))), status.INVALID_ARGUMENT, /^invalid grammar: .{0,1100}$/s);
      // The valid grammar still constrains.
      const r = await main.generate(grammar('root ::= "yes" | "no"', { maxTokens: 8 }));
      assert.match(r.text, /^(yes|no)$/);
    });

    it("grammars llama.cpp's parser cannot survive are refused before it runs (they used to crash or hang the engine)", async () => {
      // x{m,n} with m > n made the parser loop ~2^64 times; chained {} grow exponentially.
      await fails(main.generate(grammar("root ::= [a]{5,2}")), status.INVALID_ARGUMENT, "invalid grammar: repetition {5,2}: the minimum is larger than the maximum");
      await fails(main.generate(grammar("root ::= [a]{2}{3}")), status.INVALID_ARGUMENT, "invalid grammar: repetition {3} follows another {}: put the repeated item in parentheses");
      await fails(main.generate(grammar('root ::= "x"{0,100000}')), status.INVALID_ARGUMENT, "invalid grammar: repetition counts ({m,n}) add up to more than 10000");
      // 30,000 nested groups overflowed the parser's stack (SIGSEGV).
      await fails(main.generate(grammar("root ::= " + "(".repeat(30_000) + '"a"' + ")".repeat(30_000))), status.INVALID_ARGUMENT, "invalid grammar: groups are nested deeper than 512 levels");
      // The same through a JSON schema, whose converter writes {5,2} for this.
      await fails(main.generate(schema('{"type": "string", "minLength": 5, "maxLength": 2}')), status.INVALID_ARGUMENT, "invalid grammar: repetition {5,2}: the minimum is larger than the maximum");
      // Braces inside literals and classes are text, not repetitions.
      assert.match((await main.generate(grammar('root ::= "{5,2}" [{}]', { maxTokens: 8 }))).text, /^\{5,2\}[{}]$/);
      assert.match((await main.generate(grammar("root ::= ([a-c]{2}){2}", { maxTokens: 8 }))).text, /^[a-c]{4}$/);
    });

    it("grammars over token ids: matched by id; an id outside the vocabulary is refused; an unmatchable one ends the request, not the engine", async () => {
      // This used to abort the engine ("Unexpected empty grammar stack" thrown on the scheduler thread).
      const ids = (await main.tokenize("Hello world")).ids;
      assert.equal(ids.length, 2);
      const r = await main.generate(grammar(`root ::= <[${ids[0]}]> <[${ids[1]}]>`, { maxTokens: 8 }));
      assert.deepEqual(r.ids, ids);
      assert.equal(r.done.finishReason, FinishReason.FINISH_REASON_STOP);
      await fails(main.generate(grammar("root ::= <[999999999]>")), status.INVALID_ARGUMENT, `invalid grammar: token <[999999999]> is not in the vocabulary (${vocab} tokens)`);
      // <|im_end|> is an end-of-generation token, which llama.cpp's grammar never matches.
      const dead = await main.generate(grammar("root ::= <|im_end|>", { maxTokens: 8 }));
      assert.equal(dead.done.finishReason, FinishReason.FINISH_REASON_ERROR);
      assert.equal(dead.done.error, "sampling failed: the grammar allows no token at this point");
      assert.equal(dead.ids.length, 0);
    });

    it("invalid json_schema: INVALID_ARGUMENT with the converter's message", async () => {
      await fails(main.generate(schema('{"type": ')), status.INVALID_ARGUMENT, /^invalid json_schema: \[json\.exception\.parse_error\.101\] parse error at line 1, column 10/);
      await fails(main.generate(schema('{"type": "foo"}')), status.INVALID_ARGUMENT, /^invalid json_schema: JSON schema conversion failed:\nJSON schema error at #: unrecognized type foo$/);
      await fails(main.generate(schema('{"$ref": "#/definitions/nope"}')), status.INVALID_ARGUMENT, /cannot resolve \$ref #\/definitions\/nope/);
      await fails(main.generate(schema('{"$ref": "https://example.com/s.json"}')), status.INVALID_ARGUMENT, /unsupported \$ref https:\/\/example\.com\/s\.json/);
      await fails(main.generate(schema("[1, 2]")), status.INVALID_ARGUMENT, /schema must be an object$/);
      await fails(main.generate(schema("")), status.INVALID_ARGUMENT, /^invalid json_schema: .*parse error/);
      await fails(main.generate(schema(" ".repeat(70_000))), status.INVALID_ARGUMENT, "json_schema is larger than 64 KiB");
      // nlohmann quotes the whole unterminated string ("last read: ..."): capped.
      await fails(main.generate(schema('{"a": "' + "x".repeat(60_000))), status.INVALID_ARGUMENT, /^invalid json_schema: .*missing closing quote.{0,1000}$/s);
      // Deep nesting would overflow the converter's recursion.
      await fails(main.generate(schema('{"a": ' + "[".repeat(30_000) + "]".repeat(30_000) + "}")), status.INVALID_ARGUMENT, "invalid json_schema: nested deeper than 128 levels");
      const r = await main.generate(hi({ maxTokens: 64, constraint: { $case: "jsonSchema", value: '{"type": "boolean"}' } }));
      assert.match(r.text, /^(true|false)$/);
    });
  });

  describe("Generate: sampling, stop strings, session ids", () => {
    it("absurd sampling values: INVALID_ARGUMENT naming the field and its range", async () => {
      const cases: [SamplingParams, string][] = [
        [{ temperature: NaN }, "sampling.temperature must be within [0, 100]"],
        [{ temperature: Infinity }, "sampling.temperature must be within [0, 100]"],
        [{ temperature: -0.5 }, "sampling.temperature must be within [0, 100]"],
        [{ temperature: 101 }, "sampling.temperature must be within [0, 100]"],
        [{ topP: 0 }, "sampling.top_p must be within (0, 1]"],
        [{ topP: 1.5 }, "sampling.top_p must be within (0, 1]"],
        [{ topP: NaN }, "sampling.top_p must be within (0, 1]"],
        [{ topK: vocab + 1 }, `sampling.top_k must be within [0, ${vocab}]`],
        [{ topK: -1 }, `sampling.top_k must be within [0, ${vocab}]`],
        [{ minP: -0.1 }, "sampling.min_p must be within [0, 1]"],
        [{ minP: 2 }, "sampling.min_p must be within [0, 1]"],
        [{ repeatPenalty: 0 }, "sampling.repeat_penalty must be within (0, 10]"],
        [{ repeatPenalty: -1 }, "sampling.repeat_penalty must be within (0, 10]"],
        [{ repeatPenalty: -Infinity }, "sampling.repeat_penalty must be within (0, 10]"],
        [{ repeatPenalty: 11 }, "sampling.repeat_penalty must be within (0, 10]"],
        [{ repeatLastN: -2 }, "sampling.repeat_last_n must be -1 (whole context) or within [0, 1048576]"],
        [{ repeatLastN: 2 ** 31 - 1 }, "sampling.repeat_last_n must be -1 (whole context) or within [0, 1048576]"],
        [{ presencePenalty: 10.5 }, "sampling.presence_penalty must be within [-10, 10]"],
        [{ presencePenalty: NaN }, "sampling.presence_penalty must be within [-10, 10]"],
        [{ frequencyPenalty: -Infinity }, "sampling.frequency_penalty must be within [-10, 10]"],
        [{ frequencyPenalty: -11 }, "sampling.frequency_penalty must be within [-10, 10]"],
      ];
      for (const [s, message] of cases) await fails(main.generate(sampling(s)), status.INVALID_ARGUMENT, message);
      // The edges of every range are accepted.
      const edges: SamplingParams[] = [
        { temperature: 0 }, { temperature: 100, topK: vocab, topP: 1, minP: 1, seed: 0xffffffff },
        { temperature: 0.7, topP: 1e-6, minP: 0 }, { repeatPenalty: 10, repeatLastN: -1 }, { repeatLastN: 1 << 20, repeatPenalty: 1e-3 },
        { presencePenalty: -10, frequencyPenalty: 10 },
      ];
      for (const s of edges) assert.equal((await main.generate(sampling(s))).ids.length, 2, JSON.stringify(s));
    });

    it("too many or too long stop strings, a too long session id: INVALID_ARGUMENT", async () => {
      await fails(main.generate(hi({ stop: Array(17).fill("x") })), status.INVALID_ARGUMENT, "at most 16 stop strings");
      await fails(main.generate(hi({ stop: ["ok", "y".repeat(257)] })), status.INVALID_ARGUMENT, "stop[1] is longer than 256 bytes");
      // Bytes, not characters: 129 two-byte characters are 258 bytes.
      await fails(main.generate(hi({ stop: ["é".repeat(129)] })), status.INVALID_ARGUMENT, "stop[0] is longer than 256 bytes");
      await fails(main.generate(hi({ sessionId: "s".repeat(257) })), status.INVALID_ARGUMENT, "session_id is longer than 256 bytes");
      // The limits themselves are fine, and empty stop strings are ignored.
      const ok = await main.generate(hi({ stop: [...Array(15).fill("z".repeat(256)), ""], sessionId: "s".repeat(256) }));
      assert.equal(ok.ids.length, 2);
    });
  });

  describe("capacity", () => {
    it("all slots busy and the wait queue full: RESOURCE_EXHAUSTED; the slot and the queue recover", async () => {
      const e = await Engine.start(tinyChatArgs(["--slots", "1", "--queue-max", "1", "--ctx-size", "4096"]));
      try {
        // Never-ending under this grammar: runs until cancelled (or 4096 tokens).
        const long = grammar('root ::= "a" root', { maxTokens: 0 });
        const running = e.client.generate(long, e.md());
        const firstDelta = new Promise<void>((resolve, reject) => {
          running.on("data", (ev: GenerateEvent) => ev.event?.$case === "delta" && resolve());
          running.on("error", reject);
        });
        const runningEnd = new Promise<number>((resolve) => running.on("error", (err: ServiceError) => resolve(err.code)).on("end", () => resolve(status.OK)));
        await firstDelta;
        const queued = e.client.generate(long, e.md());
        const queuedEvents: string[] = [];
        queued.on("data", (ev: GenerateEvent) => queuedEvents.push(ev.event!.$case));
        const queuedEnd = new Promise<number>((resolve) => queued.on("error", (err: ServiceError) => resolve(err.code)).on("end", () => resolve(status.OK)));
        for (let i = 0; (await e.info()).queueLength !== 1; i++) {
          assert.ok(i < 200, "the second request never queued");
          await new Promise((r) => setTimeout(r, 10));
        }
        const info = await e.info();
        assert.equal(info.slotsBusy, 1);
        await fails(e.generate(hi()), status.RESOURCE_EXHAUSTED, "all 1 slots are busy and the wait queue (1) is full");
        // Validation still comes first for a request that would not run anyway.
        await fails(e.generate(hi({ maxTokens: -1 })), status.INVALID_ARGUMENT, /^max_tokens/);
        assert.equal(queuedEvents.length, 0, "the queued request started while the slot was busy");

        running.cancel();
        assert.equal(await runningEnd, status.CANCELLED);
        // The queued request takes the slot at once.
        for (let i = 0; !queuedEvents.includes("delta"); i++) {
          assert.ok(i < 500, "the queued request never started");
          await new Promise((r) => setTimeout(r, 10));
        }
        queued.cancel();
        assert.equal(await queuedEnd, status.CANCELLED);
        assert.equal((await e.generate(hi())).ids.length, 2);
        const after = await e.info();
        assert.equal(after.queueLength, 0);
        assert.equal(after.slotsBusy, 0);
        await e.assertAlive(e.proc.pid!);
      } finally {
        await e.stop();
      }
    });
  });

  describe("shutdown and configuration", () => {
    it("shutdown: the running request ends with done CANCELLED; a queued one UNAVAILABLE, never OK with no events", async () => {
      const e = await Engine.start(tinyChatArgs(["--slots", "1", "--queue-max", "2", "--ctx-size", "4096"]));
      let stopped = false;
      try {
        const long = grammar('root ::= "a" root', { maxTokens: 0 });
        const follow = (call: ReturnType<InferenceClient["generate"]>) => {
          const events: GenerateEvent[] = [];
          call.on("data", (ev: GenerateEvent) => events.push(ev));
          const end = new Promise<{ code: number; details: string }>((resolve) =>
            call.on("error", (err: ServiceError) => resolve({ code: err.code, details: err.details })).on("end", () => resolve({ code: status.OK, details: "" })),
          );
          return { events, end };
        };
        const running = follow(e.client.generate(long, e.md()));
        for (let i = 0; !running.events.some((ev) => ev.event?.$case === "delta"); i++) {
          assert.ok(i < 500, "the running request never streamed");
          await new Promise((r) => setTimeout(r, 10));
        }
        const queued = follow(e.client.generate(long, e.md()));
        for (let i = 0; (await e.info()).queueLength !== 1; i++) {
          assert.ok(i < 200, "the second request never queued");
          await new Promise((r) => setTimeout(r, 10));
        }
        await e.proc.stop();
        stopped = true;
        const r = await running.end;
        assert.equal(r.code, status.OK);
        const done = running.events.at(-1)?.event;
        assert.equal(done?.$case, "done");
        assert.equal(done.$case === "done" && done.value.finishReason, FinishReason.FINISH_REASON_CANCELLED);
        const q = await queued.end;
        assert.equal(q.code, status.UNAVAILABLE, `the queued request ended ${q.code} ${q.details}`);
        assert.match(q.details, /shutting down; the request was not started/);
        assert.equal(queued.events.length, 0);
      } finally {
        if (!stopped) await e.stop();
      }
    });

    it("--slots above --batch-size is refused at start, naming both (each step carries a token of every slot)", () => {
      const r = spawnSync(buildBin("jota-inference"), ["--model", requireFile(testModel("tiny-chat.gguf")), "--slots", "32", "--batch-size", "16"], { encoding: "utf8", timeout: 30_000 });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /--slots \(32\) cannot exceed --batch-size \(16\)/);
    });
  });

  describe("which model the engine has", () => {
    it("Embed on an engine without an embedding model: FAILED_PRECONDITION", async () => {
      const message = "this engine has no embedding model (start it with --embed-model)";
      await fails(main.embed(["hello"]), status.FAILED_PRECONDITION, message);
      await fails(main.embed([]), status.FAILED_PRECONDITION, message);
      await fails(main.tokenize("hello", true), status.FAILED_PRECONDITION, message);
      await fails(main.detokenize([1], true), status.FAILED_PRECONDITION, message);
      assert.equal((await main.info()).embeddingModel, undefined);
    });

    it("Generate / CountTokens on an engine with only an embedding model: FAILED_PRECONDITION", async () => {
      const message = "this engine serves no chat model (start it with --model)";
      await fails(embedOnly.generate(hi()), status.FAILED_PRECONDITION, message);
      await fails(embedOnly.generate(request({})), status.FAILED_PRECONDITION, message);
      await fails(embedOnly.countTokens([user("hi")]), status.FAILED_PRECONDITION, message);
      await fails(embedOnly.tokenize("hi"), status.FAILED_PRECONDITION, message);
      await fails(embedOnly.detokenize([1]), status.FAILED_PRECONDITION, message);
      const info = await embedOnly.info();
      assert.equal(info.chatModel, undefined);
      assert.equal(info.slotsTotal, 0);
      // Its own model's vocabulary works.
      assert.ok((await embedOnly.tokenize("hi", true)).ids.length > 0);
    });

    it("Embed input errors: INVALID_ARGUMENT", async () => {
      const max = (await embedOnly.info()).embeddingModel!.contextSize;
      await fails(embedOnly.embed([]), status.INVALID_ARGUMENT, "inputs is empty");
      await fails(embedOnly.embed(Array(1025).fill("x")), status.INVALID_ARGUMENT, "at most 1024 inputs per call");
      const long = "word ".repeat(max * 2);
      const n = (await embedOnly.tokenize(long, true)).ids.length;
      await fails(embedOnly.embed(["ok", long]), status.INVALID_ARGUMENT, `inputs[1] has ${n} tokens; the embedding model takes at most ${max}`);
      await fails(embedOnly.detokenize([1, 1 << 30], true), status.INVALID_ARGUMENT, new RegExp(`^ids\\[1\\] = ${1 << 30} is not a token id`));
    });
  });
});
