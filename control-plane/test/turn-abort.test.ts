// Aborting a turn mid-stream (a client disconnect) cancels the engine's
// generation, frees its slot, and records the turn ABORTED with the partial
// reply stored. Leaving the event loop early does the same.
import assert from "node:assert/strict";
import type { EngineProcess } from "../src/engines/process";
import type { EnginePool } from "../src/engines/pool";
import { silentLogger } from "../src/log";
import { turn } from "../src/sessions/turn";
import { openDatabase, type Database } from "../src/db/database";
import { startEngine } from "./helpers/engines";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { chatArgs, deltas, last, runTurn, servingPool, userWithConversation, waitUntil } from "./helpers/turns";

describe("turn: abort (pglite)", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let db: Database;
  // A large context and max_tokens: uncancelled, the reply would run for many seconds.
  const LONG = { maxTokens: 6000 };
  before(async () => {
    [engine, db] = await Promise.all([
      startEngine({ kind: "inference", args: chatArgs(8192) }),
      openDatabase({ dataDir: await freshPgliteDir(), logger: silentLogger }),
    ]);
    pool = await servingPool([engine.address!]);
  });
  after(async () => {
    pool?.close();
    await Promise.all([engine?.stop(), db?.close()]);
  });

  const info = () => pool.inference[0]!.client.info();

  it("abort mid-stream: ABORTED, partial reply stored, the engine stops and frees its slot", async () => {
    const ids = await userWithConversation(db, "abort");
    const before = (await info()).counters!;
    const ac = new AbortController();
    let busyDuring = -1;
    const events = await runTurn(db, pool, ids, "Cuéntame una historia muy larga", { ...LONG, signal: ac.signal }, async (ev, all) => {
      if (ev.type === "delta" && deltas(all).length === 3) {
        busyDuring = (await info()).slotsBusy;
        ac.abort();
      }
    });
    assert.equal(busyDuring, 1, "the engine was generating when the turn was aborted");
    const done = last(events, "done");
    const partial = deltas(events).join("");
    assert.equal(done.status, "ABORTED");
    assert.equal(done.finishReason, "cancelled");
    assert.equal(done.text, partial);
    assert.ok(deltas(events).length >= 3 && done.usage.completionTokens < LONG.maxTokens);

    const req = await db.repos.requests.get(ids.userId, done.requestId);
    assert.deepEqual([req.status, req.finishReason, req.engine], ["ABORTED", "cancelled", engine.address]);
    assert.ok(req.finishedAt && req.ttftMs! > 0);
    const history = await db.repos.messages.recent(ids.userId, ids.conversationId, 10);
    assert.deepEqual(
      history.map((m) => [m.role, m.content]),
      [
        ["USER", "Cuéntame una historia muy larga"],
        ["ASSISTANT", partial],
      ],
    );

    // The engine saw the cancellation and its slot is free; nothing decodes on.
    await waitUntil(async () => (await info()).slotsBusy === 0, "slot freed", 2000);
    const after = (await info()).counters!;
    assert.equal(Number(after.cancellations) - Number(before.cancellations), 1);
    const settled = after.generatedTokens;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await info()).counters!.generatedTokens, settled);
  });

  it("a consumer that stops reading aborts the turn the same way", async () => {
    const ids = await userWithConversation(db, "leaver");
    const seen: string[] = [];
    let requestId = "";
    for await (const ev of turn({ repos: db.repos, pool, logger: silentLogger }, { ...ids, content: "Habla sin parar" }, LONG)) {
      if (ev.type === "started") requestId = ev.requestId;
      if (ev.type === "delta") seen.push(ev.text);
      if (seen.length === 3) break;
    }
    // return() ran the turn's finally: the outcome is recorded before the loop exits.
    const req = await db.repos.requests.get(ids.userId, requestId);
    assert.equal(req.status, "ABORTED");
    const history = await db.repos.messages.recent(ids.userId, ids.conversationId, 10);
    assert.equal(history[1]?.content, seen.join(""));
    await waitUntil(async () => (await info()).slotsBusy === 0, "slot freed", 2000);
  });

  it("a turn aborted before it streams is ABORTED with the user's message kept and no reply", async () => {
    const ids = await userWithConversation(db, "early");
    const ac = new AbortController();
    ac.abort();
    const events = await runTurn(db, pool, ids, "hola", { ...LONG, signal: ac.signal });
    assert.deepEqual(events.map((e) => e.type), ["accepted", "done"]);
    const done = last(events, "done");
    assert.deepEqual([done.status, done.text], ["ABORTED", ""]);
    assert.equal((await db.repos.requests.get(ids.userId, done.requestId)).status, "ABORTED");
    const history = await db.repos.messages.recent(ids.userId, ids.conversationId, 10);
    assert.deepEqual(history.map((m) => m.role), ["USER"]);
  });
});
