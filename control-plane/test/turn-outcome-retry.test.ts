// A turn's last write (its outcome and reply) that fails on a transient
// database error is tried again: the request does not stay STREAMING for
// ever with the reply lost while the caller was told it completed. A write
// that keeps failing is given up after a few tries (the request is then
// ended by the next start or the nightly upkeep: stack-interrupted-turns).
import assert from "node:assert/strict";
import type { EngineProcess } from "../src/engines/process";
import type { EnginePool } from "../src/engines/pool";
import { silentLogger } from "../src/log";
import { openDatabase, type Database } from "../src/db/database";
import { startEngine } from "./helpers/engines";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { chatArgs, deltas, last, runTurn, servingPool, userWithConversation } from "./helpers/turns";

describe("turn: its outcome's write fails once (pglite)", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let db: Database;
  before(async () => {
    [engine, db] = await Promise.all([startEngine({ kind: "inference", args: chatArgs(1024) }), openDatabase({ dataDir: await freshPgliteDir(), logger: silentLogger })]);
    pool = await servingPool([engine.address!]);
  });
  after(async () => {
    pool?.close();
    await Promise.all([engine?.stop(), db?.close()]);
  });

  it("is tried again: the request ends COMPLETED with the streamed reply stored", async () => {
    const ids = await userWithConversation(db, "retry");
    const endTurn = db.repos.requests.endTurn.bind(db.repos.requests);
    let calls = 0;
    db.repos.requests.endTurn = async (...args: Parameters<typeof endTurn>) => {
      if (++calls === 1) throw new Error("Connection terminated unexpectedly");
      return endTurn(...args);
    };
    try {
      const events = await runTurn(db, pool, ids, "Hola", { maxTokens: 8 });
      const done = last(events, "done");
      assert.equal(calls, 2, "the failed write was tried once more");
      assert.equal(done.status, "COMPLETED");
      assert.ok(done.replyMessageId, "the reply was stored");
      const req = await db.repos.requests.get(ids.userId, done.requestId);
      assert.equal(req.status, "COMPLETED");
      const said = await db.repos.messages.recent(ids.userId, ids.conversationId, 10);
      assert.deepEqual(said.map((m) => m.role), ["USER", "ASSISTANT"]);
      assert.equal(said[1]!.content, deltas(events).join(""));
    } finally {
      db.repos.requests.endTurn = endTurn;
    }
  });
});
