// POST /v1/chat/completions through the official openai SDK: non-streamed and
// streamed (SSE chunks, [DONE], the usage chunk) replies of the same greedy
// request are the same text, and the same as what is stored; the request's
// messages become the conversation's history (system -> system prompt);
// X-Jota-Conversation continues a stored conversation; response_format
// json_schema constrains the reply.
import assert from "node:assert/strict";
import type OpenAI from "openai";
import { ChatCompletion, ChatCompletionChunk } from "../src/openai/chat";
import { api, startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { engineModels, openaiClient } from "./helpers/openai";

describe("openai /v1/chat/completions", function () {
  this.timeout(180_000);
  let t: TestGateway;
  let u: TestUser;
  let client: OpenAI;
  before(async () => {
    t = await startTestGateway({ env: { JOTA_RATE_BURST: "1000" } });
    u = await t.user("chatter");
    client = openaiClient(t, u.key);
  });
  after(async () => t?.close());

  const greedy = {
    model: "jota",
    messages: [{ role: "user" as const, content: "Hola, ¿qué tal estás hoy?" }],
    temperature: 0,
    seed: 7,
    max_tokens: 40,
  };

  async function stored(conversationId: string) {
    return (await t.stack.db.repos.messages.list(u.userId, conversationId, { limit: 50 })).items.map((m) => ({ role: m.role, content: m.content, requestId: m.requestId }));
  }

  it("non-streamed and streamed greedy replies are the same text, and that text is stored", async () => {
    const { data: full, response } = await client.chat.completions.create(greedy).withResponse();
    assert.equal(full.object, "chat.completion");
    assert.equal(full.choices.length, 1);
    const text = full.choices[0]!.message.content!;
    assert.ok(text.length > 0, "empty reply");
    assert.equal(full.choices[0]!.message.role, "assistant");
    assert.ok(["stop", "length"].includes(full.choices[0]!.finish_reason));
    assert.equal(full.model, (await engineModels(t.stack)).chat, "the response names the model that served");
    const usage = full.usage!;
    assert.ok(usage.completion_tokens > 0 && usage.completion_tokens <= 40);
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    if (full.choices[0]!.finish_reason === "length") assert.equal(usage.completion_tokens, 40);

    const conv1 = response.headers.get("x-jota-conversation")!;
    const req1 = response.headers.get("x-jota-request")!;
    assert.equal(full.id, `chatcmpl-${req1}`);
    const r1 = await t.stack.db.repos.requests.get(u.userId, req1);
    assert.equal(r1.status, "COMPLETED");
    assert.equal(r1.conversationId, conv1);
    assert.equal(r1.completionTokens, usage.completion_tokens);
    assert.deepEqual(await stored(conv1), [
      { role: "USER", content: greedy.messages[0]!.content, requestId: req1 },
      { role: "ASSISTANT", content: text, requestId: req1 },
    ]);

    const { data: stream, response: sres } = await client.chat.completions
      .create({ ...greedy, stream: true, stream_options: { include_usage: true } })
      .withResponse();
    assert.match(sres.headers.get("content-type")!, /^text\/event-stream/);
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    const req2 = sres.headers.get("x-jota-request")!;
    const conv2 = sres.headers.get("x-jota-conversation")!;
    assert.notEqual(conv2, conv1, "a request without X-Jota-Conversation starts a new conversation");
    assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === `chatcmpl-${req2}`));
    assert.equal(chunks[0]!.choices[0]!.delta.role, "assistant");
    const usageChunk = chunks.at(-1)!;
    assert.deepEqual(usageChunk.choices, [], "the usage chunk comes last, without choices");
    const finals = chunks.filter((c) => c.choices[0]?.finish_reason);
    assert.equal(finals.length, 1);
    assert.equal(finals[0]!.choices[0]!.finish_reason, full.choices[0]!.finish_reason);
    assert.ok(chunks.slice(0, -1).every((c) => c.usage === null), "with include_usage every other chunk has usage null");
    const streamed = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    assert.ok(chunks.filter((c) => c.choices[0]?.delta.content).length > 1, "the reply came in several chunks");
    assert.equal(streamed, text, "streamed and non-streamed greedy replies differ");
    assert.equal(usageChunk.usage!.completion_tokens, usage.completion_tokens);
    assert.equal(usageChunk.usage!.prompt_tokens, usage.prompt_tokens);
    assert.equal((await stored(conv2)).at(-1)!.content, streamed);
    assert.equal((await t.stack.db.repos.requests.get(u.userId, req2)).status, "COMPLETED");
  });

  it("the raw stream is SSE data lines ending in data: [DONE]; raw answers are as documented", async () => {
    const res = await fetch(`${t.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${u.key}`, "content-type": "application/json" },
      body: JSON.stringify({ ...greedy, max_tokens: 8, stream: true }),
    });
    assert.equal(res.status, 200);
    const body = await res.text();
    const events = body.split("\n\n").filter(Boolean);
    assert.ok(events.every((e) => e.startsWith("data: ")), body);
    assert.equal(events.at(-1), "data: [DONE]");
    const last = JSON.parse(events.at(-2)!.slice(6));
    assert.ok(["stop", "length"].includes(last.choices[0].finish_reason));
    assert.ok(!("usage" in last), "no usage fields unless stream_options.include_usage");
    // Every chunk, and the non-streamed answer, are what the OpenAPI document describes.
    for (const e of events.slice(0, -1)) ChatCompletionChunk.parse(JSON.parse(e.slice(6)));
    const withUsage = await fetch(`${t.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${u.key}`, "content-type": "application/json" },
      body: JSON.stringify({ ...greedy, max_tokens: 8, stream: true, stream_options: { include_usage: true } }),
    });
    const usageEvents = (await withUsage.text()).split("\n\n").filter(Boolean).slice(0, -1);
    for (const e of usageEvents) ChatCompletionChunk.parse(JSON.parse(e.slice(6)));
    assert.ok(ChatCompletionChunk.parse(JSON.parse(usageEvents.at(-1)!.slice(6))).usage, "the last chunk carries the usage");
    const whole = await api(t, u.key, "POST", "/v1/chat/completions", { ...greedy, max_tokens: 8 });
    assert.equal(whole.status, 200, whole.text);
    ChatCompletion.parse(whole.json);
  });

  it("the request's messages are the new conversation's history; system messages are its system prompt", async () => {
    const messages = [
      { role: "system" as const, content: "Eres un loro. Repite." },
      { role: "user" as const, content: "Primera pregunta" },
      { role: "assistant" as const, content: "Primera respuesta" },
      { role: "user" as const, content: [{ type: "text" as const, text: "Segunda" }, { type: "text" as const, text: "pregunta" }] },
    ];
    const { data, response } = await client.chat.completions.create({ model: "jota", messages, max_tokens: 4, temperature: 0 }).withResponse();
    const conv = response.headers.get("x-jota-conversation")!;
    const req = response.headers.get("x-jota-request")!;
    const history = await stored(conv);
    assert.deepEqual(history.slice(0, 3), [
      { role: "USER", content: "Primera pregunta", requestId: null },
      { role: "ASSISTANT", content: "Primera respuesta", requestId: null },
      { role: "USER", content: "Segunda\npregunta", requestId: req },
    ]);
    assert.equal(history.length, 4);
    assert.equal(history[3]!.content, data.choices[0]!.message.content);
    // The engine was given exactly the system prompt and that history: its own count of that prompt matches.
    const { tokens } = await t.stack.pool.inference[0]!.client.countTokens({
      messages: [
        { role: "system", content: "Eres un loro. Repite." },
        { role: "user", content: "Primera pregunta" },
        { role: "assistant", content: "Primera respuesta" },
        { role: "user", content: "Segunda\npregunta" },
      ],
      chatTemplate: "",
      noGenerationPrompt: false,
    });
    assert.equal(data.usage!.prompt_tokens, tokens);
  });

  it("X-Jota-Conversation continues a stored conversation: only the last user message is new", async () => {
    const first = await client.chat.completions.create({ ...greedy, max_tokens: 6 }).withResponse();
    const conv = first.response.headers.get("x-jota-conversation")!;
    const before = await stored(conv);
    const second = await client.chat.completions
      .create(
        { model: "jota", temperature: 0, max_tokens: 6, messages: [{ role: "user", content: "ignored: already stored" }, { role: "user", content: "¿Y mañana?" }] },
        { headers: { "X-Jota-Conversation": conv } },
      )
      .withResponse();
    assert.equal(second.response.headers.get("x-jota-conversation"), conv);
    const after = await stored(conv);
    assert.deepEqual(after.slice(0, 2), before);
    assert.deepEqual(after.slice(2).map((m) => [m.role, m.content]), [
      ["USER", "¿Y mañana?"],
      ["ASSISTANT", second.data.choices[0]!.message.content],
    ]);
  });

  it("response_format json_schema constrains the reply to the schema", async () => {
    const schema = {
      type: "object",
      properties: { answer: { enum: ["yes", "no", "maybe"] }, score: { type: "integer", minimum: 0, maximum: 9 } },
      required: ["answer", "score"],
      additionalProperties: false,
    };
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.create({
        model: "jota",
        messages: [{ role: "user", content: `Answer ${seed}` }],
        temperature: 1,
        seed,
        max_tokens: 200,
        response_format: { type: "json_schema", json_schema: { name: "verdict", schema, strict: true } },
      });
      assert.equal(r.choices[0]!.finish_reason, "stop");
      const v = JSON.parse(r.choices[0]!.message.content!);
      assert.deepEqual(Object.keys(v).sort(), ["answer", "score"]);
      assert.ok(["yes", "no", "maybe"].includes(v.answer), v.answer);
      assert.ok(Number.isInteger(v.score) && v.score >= 0 && v.score <= 9, String(v.score));
    }
  });

  it("max_tokens bounds the reply and the same seed repeats a sampled reply", async () => {
    const body = { model: "jota", messages: [{ role: "user" as const, content: "Cuenta hasta cien" }], temperature: 0.9, top_p: 0.95, seed: 1234, max_tokens: 3 };
    const [a, b] = [await client.chat.completions.create(body), await client.chat.completions.create(body)];
    assert.equal(a.choices[0]!.message.content, b.choices[0]!.message.content);
    assert.ok(a.usage!.completion_tokens <= 3);
    if (a.choices[0]!.finish_reason === "length") assert.equal(a.usage!.completion_tokens, 3);
  });
});
