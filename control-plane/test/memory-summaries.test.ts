// Summaries of long conversations, with real parts: the tiny chat model in a
// small context (so the history must be trimmed) and PGlite. A turn that
// trims asks for a summary through a message past the trimmed ones; the
// summary is written in as many rounds as the messages need to fit; the next
// turns carry it in place of what it covers.
import assert from "node:assert/strict";
import { openDatabase, type Database } from "../src/db/database";
import type { EnginePool } from "../src/engines/pool";
import type { EngineProcess } from "../src/engines/process";
import { silentLogger } from "../src/log";
import { summarizeConversation } from "../src/memory/summaries";
import { turn, type TurnEvent, type TurnSettled } from "../src/sessions/turn";
import { startEngine } from "./helpers/engines";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { chatArgs, servingPool, userWithConversation } from "./helpers/turns";

const CTX = 1024;
const line = (i: number) => `Mensaje ${i}: seguimos con el huerto, las tomateras y el riego por goteo.`;

describe("memory: summaries of long conversations", function () {
  this.timeout(180_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let db: Database;
  before(async () => {
    [engine, db] = await Promise.all([startEngine({ kind: "inference", args: chatArgs(CTX, 1) }), openDatabase({ dataDir: await freshPgliteDir(), logger: silentLogger })]);
    pool = await servingPool([engine.address!]);
  });
  after(async () => {
    pool?.close();
    await Promise.all([engine?.stop(), db?.close()]);
  });

  async function run(ids: { userId: string; conversationId: string }, content: string) {
    const settled: TurnSettled[] = [];
    const events: TurnEvent[] = [];
    for await (const ev of turn({ repos: db.repos, pool, logger: silentLogger, afterTurn: (t) => settled.push(t) }, { ...ids, content }, { maxTokens: 8 })) events.push(ev);
    const started = events.find((e) => e.type === "started") as Extract<TurnEvent, { type: "started" }>;
    assert.ok(started, JSON.stringify(events.at(-1)));
    assert.equal(settled.length, 1, "afterTurn once");
    return { started, settled: settled[0]! };
  }

  it("a trimming turn asks for a summary past the trimmed messages; it is written, stored once, and replaces them", async () => {
    const ids = await userWithConversation(db, "long");
    for (let i = 0; i < 50; i++) await db.repos.messages.append(ids.userId, ids.conversationId, { role: i % 2 ? "ASSISTANT" : "USER", content: line(i) });

    const first = await run(ids, "¿Qué hablamos del riego?");
    assert.equal(first.settled.status, "COMPLETED");
    assert.ok(first.started.trimmedMessages > 0, "the history did not fit");
    const history = await db.repos.messages.after(ids.userId, ids.conversationId, null, 100);
    const through = first.settled.summarizeThroughId;
    assert.ok(through, "a summary is asked for");
    const at = history.findIndex((m) => m.id === through);
    assert.ok(at >= first.started.trimmedMessages - 1, `it covers every trimmed message (through #${at}, ${first.started.trimmedMessages} trimmed)`);
    assert.ok(at < history.length - 2, "never the turn's own messages");
    assert.equal(history[at + 1]!.role, "USER", "the history after it starts with the user");

    const r = await summarizeConversation({ repos: db.repos, pool }, { ...ids, throughId: through });
    assert.equal(r.skipped, undefined);
    assert.equal(r.summarized, at + 1, "every message through it");
    assert.ok(r.rounds > 1, `more messages than one ${CTX}-token prompt holds: several rounds (${r.rounds})`);
    const conv = await db.repos.conversations.get(ids.userId, ids.conversationId);
    assert.equal(conv.summaryThroughId, through);
    assert.ok(conv.summary && conv.summary.length === r.chars && r.chars > 0);

    // The same request again (a later turn trimming the same): nothing to do.
    const again = await summarizeConversation({ repos: db.repos, pool }, { ...ids, throughId: through });
    assert.equal(again.skipped, "already summarized through that message");
    // A writer that read the conversation before this summary finds it moved on.
    assert.equal(await db.repos.conversations.replaceSummary(ids.userId, ids.conversationId, null, "stale", history[3]!.id), false);
    assert.equal((await db.repos.conversations.get(ids.userId, ids.conversationId)).summary, conv.summary);

    // The next turn carries the summary instead of what it covers.
    const next = await run(ids, "¿Y de las tomateras?");
    assert.equal(next.settled.status, "COMPLETED");
    const after = history.length - (at + 1);
    assert.equal(next.started.historyMessages + next.started.trimmedMessages, after + 1, "only what the summary does not cover, and the new message");
  });

  it("a conversation that fits asks for nothing", async () => {
    const ids = await userWithConversation(db, "short");
    const r = await run(ids, "Hola");
    assert.equal(r.started.trimmedMessages, 0);
    assert.equal(r.settled.summarizeThroughId, undefined);
  });
});
