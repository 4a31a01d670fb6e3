// A conversation longer than the engine's context: the turn sends the newest
// messages that fit (measured with the engine's CountTokens), succeeds, and
// the engine never sees a prompt it would refuse. The summary replaces what
// it covers.
import assert from "node:assert/strict";
import type { EngineProcess } from "../src/engines/process";
import type { EnginePool } from "../src/engines/pool";
import { silentLogger } from "../src/log";
import { openDatabase, type Database } from "../src/db/database";
import { buildPrompt, DEFAULT_SYSTEM_PROMPT } from "../src/sessions/prompt";
import { startEngine } from "./helpers/engines";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { chatArgs, last, runTurn, servingPool, userWithConversation } from "./helpers/turns";

const CTX = 256;
const line = (i: number) => `Mensaje número ${i}: hoy hablamos del jardín, de las tomateras y del riego por goteo que instalamos en primavera.`;

describe("turn: history longer than the context (pglite)", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let db: Database;
  before(async () => {
    [engine, db] = await Promise.all([
      startEngine({ kind: "inference", args: chatArgs(CTX, 1) }),
      openDatabase({ dataDir: await freshPgliteDir(), logger: silentLogger }),
    ]);
    pool = await servingPool([engine.address!]);
  });
  after(async () => {
    pool?.close();
    await Promise.all([engine?.stop(), db?.close()]);
  });

  const client = () => pool.inference[0]!.client;

  async function longConversation(name: string, n: number) {
    const ids = await userWithConversation(db, name);
    const stored = [];
    for (let i = 0; i < n; i++)
      stored.push(await db.repos.messages.append(ids.userId, ids.conversationId, { role: i % 2 ? "ASSISTANT" : "USER", content: line(i) }));
    return { ids, stored };
  }

  it("trims the oldest messages so the prompt fits; the turn completes without an engine error", async () => {
    const { ids } = await longConversation("long", 30);
    const all = await db.repos.messages.recent(ids.userId, ids.conversationId, 100);
    const whole = await client().countTokens({
      messages: all.map((m) => ({ role: m.role.toLowerCase(), content: m.content })),
      chatTemplate: "",
      noGenerationPrompt: false,
    });
    assert.ok(whole.tokens > 3 * CTX, `the stored history (${whole.tokens} tokens) is far beyond the context (${CTX})`);
    const errorsBefore = Number((await client().info()).counters!.errors);

    const events = await runTurn(db, pool, ids, "¿Qué instalamos en primavera?", { maxTokens: 16 });
    const started = events[1]!;
    assert.ok(started.type === "started", `first event: ${JSON.stringify(started)}`);
    assert.ok(started.trimmedMessages > 0 && started.historyMessages >= 1, JSON.stringify(started));
    assert.equal(started.trimmedMessages + started.historyMessages, 31);
    assert.ok(started.promptTokens < CTX - 16, `prompt ${started.promptTokens} leaves room for the reply`);
    const done = last(events, "done");
    assert.equal(done.status, "COMPLETED");
    assert.equal((await db.repos.requests.get(ids.userId, done.requestId)).status, "COMPLETED");
    assert.equal(Number((await client().info()).counters!.errors), errorsBefore, "the engine reported no error");

    // Every message's count is stored, so later turns need not count them again.
    const counted = await db.repos.messages.recent(ids.userId, ids.conversationId, 100);
    assert.ok(counted.filter((m) => m.role === "USER" || m.requestId === null).every((m) => (m.tokens ?? 0) > 0));
  });

  it("the window is the newest messages, starts with a user message, and fits exactly", async () => {
    const { ids } = await longConversation("window", 20);
    const conversation = await db.repos.conversations.get(ids.userId, ids.conversationId);
    const budget = 150;
    const p = await buildPrompt(client(), { conversation, systemPrompt: DEFAULT_SYSTEM_PROMPT, budget, history: await db.repos.messages.recent(ids.userId, ids.conversationId, 200) });
    const exact = await client().countTokens({ messages: p.messages, chatTemplate: "", noGenerationPrompt: false });
    assert.ok(exact.tokens <= budget, `${exact.tokens} tokens > budget ${budget}`);
    assert.ok(p.tokens >= exact.tokens, "the reported size is never below the real one");
    assert.equal(p.messages[0]!.role, "system");
    assert.equal(p.messages[1]!.role, "user");
    assert.equal(p.messages[p.messages.length - 1]!.content, line(19));
    assert.deepEqual(
      p.messages.slice(1).map((m) => m.content),
      Array.from({ length: p.historyMessages }, (_, i) => line(20 - p.historyMessages + i)),
    );
    assert.ok(p.trimmedMessages > 0);
  });

  it("a window that fits whole but opens with the assistant (the history limit cut a question from its answer) starts at the next user message", async () => {
    const { ids } = await longConversation("cut", 3); // user, assistant, user
    const conversation = await db.repos.conversations.get(ids.userId, ids.conversationId);
    const history = await db.repos.messages.recent(ids.userId, ids.conversationId, 2); // assistant, user
    assert.deepEqual(history.map((m) => m.role), ["ASSISTANT", "USER"]);
    const p = await buildPrompt(client(), { conversation, systemPrompt: DEFAULT_SYSTEM_PROMPT, budget: CTX, history });
    assert.deepEqual(p.messages.map((m) => m.role), ["system", "user"]);
    assert.equal(p.messages[1]!.content, line(2));
    assert.equal(p.historyMessages, 1);
  });

  it("stored counts from another model that say the history fits when it does not: counted again on this engine, trimmed, the turn completes", async () => {
    const { ids, stored } = await longConversation("stale-counts", 30);
    // As if counted under a model whose tokenizer makes far fewer tokens of the same text.
    for (const m of stored) await db.repos.messages.setTokens(ids.userId, m.id, 2);
    const events = await runTurn(db, pool, ids, "¿Qué instalamos en primavera?", { maxTokens: 16 });
    const done = last(events, "done");
    assert.equal(done.status, "COMPLETED");
    const started = events.find((e) => e.type === "started");
    assert.ok(started?.type === "started");
    assert.ok(started.trimmedMessages > 0, JSON.stringify(started));
    assert.ok(started.promptTokens < CTX - 16, `prompt ${started.promptTokens} leaves room for the reply`);
  });

  it("with a summary, what it covers is replaced by it", async () => {
    const { ids, stored } = await longConversation("summary", 6);
    await db.repos.conversations.setSummary(ids.userId, ids.conversationId, "Hablamos del riego del jardín.", stored[3]!.id);
    const conversation = await db.repos.conversations.get(ids.userId, ids.conversationId);
    const p = await buildPrompt(client(), { conversation, systemPrompt: "Eres Jota.", budget: 200, history: await db.repos.messages.recent(ids.userId, ids.conversationId, 200) });
    assert.match(p.messages[0]!.content, /^Eres Jota\.\n\nSummary of the earlier conversation:\nHablamos del riego del jardín\.$/);
    assert.deepEqual(p.messages.slice(1).map((m) => m.content), [line(4), line(5)]);
    assert.equal(p.summaryIncluded, true);
  });

  it("a message that cannot fit even alone fails the turn as an invalid request, before the engine sees it", async () => {
    const ids = await userWithConversation(db, "huge");
    const generatedBefore = Number((await client().info()).counters!.requests);
    const events = await runTurn(db, pool, ids, line(0).repeat(20), { maxTokens: 16 });
    const err = last(events, "error");
    assert.equal(err.errorType, "INVALID_REQUEST");
    assert.match(err.message, /needs \d+ prompt tokens; the engine's context leaves \d+ for the prompt/);
    assert.equal(Number((await client().info()).counters!.requests), generatedBefore, "no Generate was sent");
    assert.deepEqual((await db.repos.messages.recent(ids.userId, ids.conversationId, 10)).map((m) => m.role), ["USER"]);
  });
});
