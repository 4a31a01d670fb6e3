// A stateless OpenAI client (the official SDK, no X-Jota-Conversation)
// resending its whole history each call: the chat stays one stored
// conversation whose messages are stored once, each call continues the
// engine session of the one before (its prompt's prefix is reused, not
// prefilled again), a stored history is continued by one call only, and a
// history that was edited, or a conversation that moved on through another
// interface, gets a new conversation with the request's history.
import assert from "node:assert/strict";
import type OpenAI from "openai";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { openaiClient } from "./helpers/openai";

type Msg = OpenAI.Chat.Completions.ChatCompletionMessageParam;

describe("openai /v1/chat/completions: stateless clients continue their conversation", function () {
  this.timeout(180_000);
  let t: TestGateway;
  before(async () => {
    t = await startTestGateway({ env: { JOTA_RATE_BURST: "1000" } });
  });
  after(async () => t?.close());

  const system: Msg = { role: "system", content: "Eres un asistente breve." };

  async function call(client: OpenAI, messages: Msg[], stream = false) {
    const params = { model: "jota", messages, temperature: 0, max_tokens: 8 };
    if (!stream) {
      const { data, response } = await client.chat.completions.create(params).withResponse();
      return { conv: response.headers.get("x-jota-conversation")!, reply: data.choices[0]!.message.content ?? "", usage: data.usage! };
    }
    const { data, response } = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } }).withResponse();
    let reply = "";
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of data) {
      reply += chunk.choices[0]?.delta.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    return { conv: response.headers.get("x-jota-conversation")!, reply, usage: usage! };
  }

  async function stored(u: TestUser, conv: string) {
    return (await t.stack.db.repos.messages.list(u.userId, conv, { limit: 50 })).items.map((m) => [m.role, m.content]);
  }

  async function conversations(u: TestUser) {
    return (await t.stack.db.repos.conversations.list(u.userId, { limit: 50 })).items.map((c) => c.id);
  }

  it("a chat of three calls is one conversation, its messages stored once, each call reusing the one before's KV cache", async () => {
    const u = await t.user("stateless-chat");
    const client = openaiClient(t, u.key);
    const one = await call(client, [system, { role: "user", content: "Hola" }]);
    assert.ok(one.reply.length > 0, "the first reply is not empty (nothing to continue otherwise)");
    const two = await call(client, [system, { role: "user", content: "Hola" }, { role: "assistant", content: one.reply }, { role: "user", content: "¿Qué hora es?" }]);
    assert.equal(two.conv, one.conv, "the second call continues the first's conversation");
    // The session's slot holds the first call's prompt and reply: at least that prompt is reused.
    assert.ok(two.usage.prompt_tokens_details!.cached_tokens! >= one.usage.prompt_tokens, `cached ${two.usage.prompt_tokens_details!.cached_tokens} < the first prompt's ${one.usage.prompt_tokens}`);
    const three = await call(
      client,
      [system, { role: "user", content: "Hola" }, { role: "assistant", content: one.reply }, { role: "user", content: "¿Qué hora es?" }, { role: "assistant", content: two.reply }, { role: "user", content: "Gracias" }],
      true,
    );
    assert.equal(three.conv, one.conv, "the streamed third call continues it too");
    assert.ok(three.usage.prompt_tokens_details!.cached_tokens! >= two.usage.prompt_tokens, `cached ${three.usage.prompt_tokens_details!.cached_tokens} < the second prompt's ${two.usage.prompt_tokens}`);

    assert.deepEqual(await stored(u, one.conv), [
      ["USER", "Hola"],
      ["ASSISTANT", one.reply],
      ["USER", "¿Qué hora es?"],
      ["ASSISTANT", two.reply],
      ["USER", "Gracias"],
      ["ASSISTANT", three.reply],
    ]);
    assert.deepEqual(await conversations(u), [one.conv]);
  });

  it("a reply sent back with whitespace around it still continues the conversation", async () => {
    const u = await t.user("stateless-trim");
    const client = openaiClient(t, u.key);
    const one = await call(client, [{ role: "user", content: "Buenos días" }]);
    const two = await call(client, [{ role: "user", content: "Buenos días" }, { role: "assistant", content: `  ${one.reply}\n` }, { role: "user", content: "Adiós" }]);
    assert.equal(two.conv, one.conv);
    // The stored reply stays the engine's own text.
    assert.deepEqual((await stored(u, one.conv)).slice(0, 3), [["USER", "Buenos días"], ["ASSISTANT", one.reply], ["USER", "Adiós"]]);
  });

  it("a history is continued once: the same call sent twice at once, or an edited history, gets a new conversation with the request's history", async () => {
    const u = await t.user("stateless-forks");
    const client = openaiClient(t, u.key);
    const one = await call(client, [{ role: "user", content: "Cuéntame algo" }]);
    const next: Msg[] = [{ role: "user", content: "Cuéntame algo" }, { role: "assistant", content: one.reply }, { role: "user", content: "Otra cosa" }];
    const [a, b] = await Promise.all([call(client, next), call(client, next)]);
    const convs = [a.conv, b.conv];
    assert.ok(convs.includes(one.conv), "one of the two continues the conversation");
    const fork = convs.find((c) => c !== one.conv);
    assert.ok(fork, "the other made its own");
    for (const [conv, r] of [[a.conv, a], [b.conv, b]] as const)
      assert.deepEqual(await stored(u, conv), [["USER", "Cuéntame algo"], ["ASSISTANT", one.reply], ["USER", "Otra cosa"], ["ASSISTANT", r.reply]]);

    const edited = await call(client, [{ role: "user", content: "Cuéntame algo" }, { role: "assistant", content: "una respuesta editada" }, { role: "user", content: "Otra cosa" }]);
    assert.ok(![one.conv, fork].includes(edited.conv), "an edited history is a new conversation");
    assert.deepEqual((await stored(u, edited.conv)).slice(0, 3), [["USER", "Cuéntame algo"], ["ASSISTANT", "una respuesta editada"], ["USER", "Otra cosa"]]);
    assert.equal((await conversations(u)).length, 3);
  });

  it("a conversation that moved on through X-Jota-Conversation is not continued by its old history", async () => {
    const u = await t.user("stateless-moved");
    const client = openaiClient(t, u.key);
    const one = await call(client, [{ role: "user", content: "Primera" }]);
    await client.chat.completions.create(
      { model: "jota", temperature: 0, max_tokens: 4, messages: [{ role: "user", content: "Por la cabecera" }] },
      { headers: { "X-Jota-Conversation": one.conv } },
    );
    const movedOn = await stored(u, one.conv);
    assert.equal(movedOn.length, 4);
    const stale = await call(client, [{ role: "user", content: "Primera" }, { role: "assistant", content: one.reply }, { role: "user", content: "Segunda" }]);
    assert.notEqual(stale.conv, one.conv, "the stored history is no longer the request's");
    assert.deepEqual(await stored(u, one.conv), movedOn, "and nothing was added to it");
    assert.deepEqual((await stored(u, stale.conv)).slice(0, 3), [["USER", "Primera"], ["ASSISTANT", one.reply], ["USER", "Segunda"]]);
  });
});
