// Turns that outlive their caller (runner.ts): a caller that stops waiting
// leaves the request PROCESSING while the turn runs on to COMPLETED; a later
// reader replays every event from the first; aborting through the runner
// stops the engine.
import assert from "node:assert/strict";
import type { EngineProcess } from "../src/engines/process";
import type { EnginePool } from "../src/engines/pool";
import { silentLogger } from "../src/log";
import { TurnRunner } from "../src/sessions/runner";
import type { TurnEvent } from "../src/sessions/turn";
import { NotFoundError } from "../src/db/repositories";
import { openDatabase, type Database } from "../src/db/database";
import { startEngine } from "./helpers/engines";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { chatArgs, deltas, servingPool, userWithConversation, waitUntil } from "./helpers/turns";

describe("turn runner (pglite)", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let pool: EnginePool;
  let db: Database;
  let runner: TurnRunner;
  before(async () => {
    [engine, db] = await Promise.all([
      startEngine({ kind: "inference", args: chatArgs(4096) }),
      openDatabase({ dataDir: await freshPgliteDir(), logger: silentLogger }),
    ]);
    pool = await servingPool([engine.address!]);
    runner = new TurnRunner({ repos: db.repos, pool, logger: silentLogger });
  });
  after(async () => {
    await runner?.close();
    pool?.close();
    await Promise.all([engine?.stop(), db?.close()]);
  });

  async function collect(it: AsyncIterable<TurnEvent>): Promise<TurnEvent[]> {
    const out: TurnEvent[] = [];
    for await (const ev of it) out.push(ev);
    return out;
  }

  it("a detached turn is PROCESSING while it runs and COMPLETED with its whole reply after", async () => {
    const ids = await userWithConversation(db, "detach");
    const h = runner.start({ ...ids, content: "Escribe algo largo" }, { maxTokens: 400 });
    const { requestId } = await h.accepted;
    // Wait until the engine streams, then stop waiting, as a REST caller past its synchronous limit does.
    for await (const ev of h.events()) if (ev.type === "delta") break;
    await h.detach();
    const mid = await db.repos.requests.get(ids.userId, requestId);
    if (!h.finished) assert.equal(mid.status, "PROCESSING");
    const result = await h.result;
    assert.equal(result.type, "done");
    assert.equal(result.status, "COMPLETED");
    const req = await db.repos.requests.get(ids.userId, requestId);
    assert.equal(req.status, "COMPLETED");
    const history = await db.repos.messages.recent(ids.userId, ids.conversationId, 5);
    assert.equal(history[1]!.content, result.text);
    assert.ok(result.usage.completionTokens > 1);
  });

  it("detached before the engine starts: PROCESSING is kept through streaming, then final", async () => {
    const ids = await userWithConversation(db, "early");
    const h = runner.start({ ...ids, content: "Hola" }, { maxTokens: 60 });
    await h.accepted;
    await h.detach();
    const result = await h.result;
    assert.equal(result.type, "done");
    assert.equal((await db.repos.requests.get(ids.userId, result.requestId)).status, "COMPLETED");
  });

  it("every reader replays the turn from its first event, also after it ended", async () => {
    const ids = await userWithConversation(db, "replay");
    const h = runner.start({ ...ids, content: "Cuéntame algo" }, { maxTokens: 40 });
    const live = collect(h.events());
    const { requestId } = await h.accepted;
    await h.result;
    const late = await collect(runner.find(ids.userId, requestId)!.events());
    const first = await live;
    assert.deepEqual(late, first);
    assert.deepEqual(
      [...new Set(first.map((e) => e.type))],
      ["accepted", "started", "delta", "done"],
    );
    const done = first[first.length - 1]!;
    assert.ok(done.type === "done");
    assert.equal(deltas(first).join(""), done.text);
  });

  it("abort through the runner: ABORTED, partial reply kept, the engine's slot freed; other users cannot find or abort it", async () => {
    const ids = await userWithConversation(db, "abort");
    const stranger = await db.repos.users.create({ username: "stranger" });
    const h = runner.start({ ...ids, content: "Habla sin parar" }, { maxTokens: 3000 });
    const { requestId } = await h.accepted;
    for await (const ev of h.events()) if (ev.type === "delta") break;
    assert.equal(runner.find(stranger.id, requestId), undefined);
    assert.throws(() => runner.abort(stranger.id, requestId), NotFoundError);
    runner.abort(ids.userId, requestId);
    const result = await h.result;
    assert.ok(result.type === "done" && result.status === "ABORTED");
    assert.ok(result.usage.completionTokens < 3000);
    await waitUntil(async () => (await pool.inference[0]!.client.info()).slotsBusy === 0, "slot freed", 5000);
    const req = await db.repos.requests.get(ids.userId, requestId);
    assert.equal(req.status, "ABORTED");
    assert.throws(() => runner.abort(ids.userId, requestId), NotFoundError, "a finished turn cannot be aborted");
  });

  it("an unknown conversation rejects `accepted` and `result`; nothing is stored", async () => {
    const ids = await userWithConversation(db, "unknown");
    const h = runner.start({ userId: ids.userId, conversationId: "0193a0c0-0000-7000-8000-000000000000", content: "hola" });
    await assert.rejects(h.accepted, NotFoundError);
    await assert.rejects(h.result, NotFoundError);
    assert.equal((await db.repos.requests.list(ids.userId)).items.length, 0);
  });
});
