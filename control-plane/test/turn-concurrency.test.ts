// Concurrent turns: turns of different conversations run at the same time on
// the engine's slots, each storing exactly what it streamed; turns of one
// conversation run one after another (locks.ts), so the second one's prompt
// holds the first one's reply.
import assert from "node:assert/strict";
import type { EngineProcess } from "../src/engines/process";
import type { EnginePool } from "../src/engines/pool";
import { silentLogger } from "../src/log";
import { ConversationBusyError, ConversationLocks } from "../src/sessions/locks";
import { turn, type TurnEvent, type TurnOptions } from "../src/sessions/turn";
import { openDatabase, type Database } from "../src/db/database";
import { startEngine } from "./helpers/engines";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { chatArgs, deltas, last, servingPool, userWithConversation } from "./helpers/turns";

describe("turn: concurrency (pglite)", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let db: Database;
  const locks = new ConversationLocks();
  before(async () => {
    [engine, db] = await Promise.all([
      startEngine({ kind: "inference", args: chatArgs(2048, 4) }),
      openDatabase({ dataDir: await freshPgliteDir(), logger: silentLogger }),
    ]);
    pool = await servingPool([engine.address!]);
  });
  after(async () => {
    pool?.close();
    await Promise.all([engine?.stop(), db?.close()]);
  });

  async function run(ids: { userId: string; conversationId: string }, content: string, opts: TurnOptions = {}, onEvent?: (ev: TurnEvent) => void) {
    const events: TurnEvent[] = [];
    for await (const ev of turn({ repos: db.repos, pool, logger: silentLogger, locks }, { ...ids, content }, opts)) {
      events.push(ev);
      onEvent?.(ev);
    }
    return events;
  }

  it("turns of different conversations (and users) stream at the same time, each stored as streamed", async () => {
    const convs = await Promise.all([0, 1, 2].map((i) => userWithConversation(db, `par${i}`)));
    const timeline: string[] = [];
    const results = await Promise.all(
      convs.map((ids, i) => run(ids, `Pregunta número ${i}`, { maxTokens: 48 }, (ev) => timeline.push(`${ev.type}:${i}`))),
    );
    // Every turn had started before the first one finished: they ran together, not one after another.
    const firstEnd = timeline.findIndex((t) => t.startsWith("done:"));
    for (const i of [0, 1, 2]) assert.ok(timeline.indexOf(`started:${i}`) < firstEnd, `turn ${i} started before any ended: ${timeline.join(" ")}`);
    for (const [i, events] of results.entries()) {
      const done = last(events, "done");
      assert.equal(done.status, "COMPLETED");
      assert.equal(done.text, deltas(events).join(""));
      const history = await db.repos.messages.recent(convs[i]!.userId, convs[i]!.conversationId, 10);
      assert.deepEqual(
        history.map((m) => [m.role, m.content]),
        [
          ["USER", `Pregunta número ${i}`],
          ["ASSISTANT", done.text],
        ],
      );
    }
  });

  it("two messages sent at once to one conversation: the second waits and sees the first reply", async () => {
    const ids = await userWithConversation(db, "serial");
    const timeline: string[] = [];
    const [a, b] = await Promise.all([
      run(ids, "Primero", { maxTokens: 24 }, (ev) => timeline.push(`${ev.type}:a`)),
      run(ids, "Segundo", { maxTokens: 24 }, (ev) => timeline.push(`${ev.type}:b`)),
    ]);
    assert.ok(timeline.indexOf("done:a") < timeline.indexOf("accepted:b"), `b began after a ended: ${timeline.join(" ")}`);
    const startedB = b.find((e) => e.type === "started");
    assert.ok(startedB?.type === "started");
    assert.equal(startedB.historyMessages, 3, "b's prompt holds a's message, a's reply and b's message");
    const history = await db.repos.messages.recent(ids.userId, ids.conversationId, 10);
    assert.deepEqual(
      history.map((m) => [m.role, m.content]),
      [
        ["USER", "Primero"],
        ["ASSISTANT", last(a, "done").text],
        ["USER", "Segundo"],
        ["ASSISTANT", last(b, "done").text],
      ],
    );
  });

  it("a turn whose history read returns only after the running turn ended (PostgreSQL runs both at once) reads it again", async () => {
    const ids = await userWithConversation(db, "read-race");
    let aStreaming!: () => void;
    const aStarted = new Promise<void>((r) => (aStreaming = r));
    const a = run(ids, "Primero", { maxTokens: 8 }, (ev) => ev.type === "started" && aStreaming());
    await aStarted;
    // b's first read is taken now, while a runs, and handed back only once a has ended and released the conversation.
    let aEnded!: () => void;
    const ended = new Promise<void>((r) => (aEnded = r));
    const forTurn = db.repos.conversations.forTurn.bind(db.repos.conversations);
    let held = false;
    db.repos.conversations.forTurn = async (...args: Parameters<typeof forTurn>) => {
      const r = await forTurn(...args);
      if (!held) {
        held = true;
        await ended;
      }
      return r;
    };
    try {
      const pb = run(ids, "Segundo", { maxTokens: 8 });
      const ea = await a;
      assert.equal(locks.busy(ids.conversationId), false, "a has released the conversation");
      aEnded();
      const b = await pb;
      const startedB = b.find((e) => e.type === "started");
      assert.ok(startedB?.type === "started");
      assert.equal(startedB.historyMessages, 3, "b's prompt holds a's message, a's reply and b's message");
      assert.equal(last(ea, "done").status, "COMPLETED");
      assert.equal(last(b, "done").status, "COMPLETED");
    } finally {
      db.repos.conversations.forTurn = forTurn;
    }
  });

  it("ifBusy 'fail': a second turn on a busy conversation is refused with nothing stored", async () => {
    const ids = await userWithConversation(db, "busy");
    const first = run(ids, "Habla largo", { maxTokens: 200 });
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(locks.busy(ids.conversationId));
    await assert.rejects(run(ids, "¿Sigues?", { ifBusy: "fail" }), ConversationBusyError);
    assert.equal(last(await first, "done").status, "COMPLETED");
    const history = await db.repos.messages.recent(ids.userId, ids.conversationId, 10);
    assert.deepEqual(history.map((m) => m.content).filter((c) => c === "¿Sigues?"), []);
    assert.equal(locks.busy(ids.conversationId), false, "the lock is released when the turn ends");
  });

  it("a wait for a busy conversation ends when its signal aborts; the queue behind it goes on", async () => {
    const ids = await userWithConversation(db, "waitabort");
    const first = run(ids, "Uno", { maxTokens: 100 });
    await new Promise((r) => setTimeout(r, 30));
    const ac = new AbortController();
    const second = run(ids, "Dos", { signal: ac.signal });
    const third = run(ids, "Tres", { maxTokens: 8 });
    ac.abort(new Error("gave up waiting"));
    await assert.rejects(second, /gave up waiting/);
    assert.equal(last(await first, "done").status, "COMPLETED");
    assert.equal(last(await third, "done").status, "COMPLETED");
    const contents = (await db.repos.messages.recent(ids.userId, ids.conversationId, 10)).filter((m) => m.role === "USER").map((m) => m.content);
    assert.deepEqual(contents, ["Uno", "Tres"]);
  });
});
