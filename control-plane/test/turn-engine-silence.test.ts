// An engine that stops sending mid-turn (stuck in a decode, or its host gone
// with the connection left open) no longer holds the turn, and with it the
// conversation, forever: past the stall limit the call is cancelled and the
// turn ends FAILED (TIMEOUT), its user message kept and the conversation free
// for the next turn. Waiting in the engine's queue before it starts the
// request is not silence. The silent engine is a stub (a real one cannot be
// made to hang on demand); a request the real engine refuses is the caller's
// error (INVALID_REQUEST), not the engine's.
import assert from "node:assert/strict";
import type { ServerWritableStream } from "@grpc/grpc-js";
import type { GenerateEvent, GenerateRequest } from "../src/gen/jota/v1/inference";
import { FinishReason } from "../src/gen/jota/v1/inference";
import { openDatabase, type Database } from "../src/db/database";
import type { EnginePool } from "../src/engines/pool";
import { silentLogger } from "../src/log";
import { ConversationLocks } from "../src/sessions/locks";
import { turn, type TurnEvent, type TurnOptions } from "../src/sessions/turn";
import { startEngine } from "./helpers/engines";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { servingBasics, stubEngine } from "./helpers/stub-engine";
import { chatArgs, last, servingPool, userWithConversation, waitUntil } from "./helpers/turns";

const started: GenerateEvent = { event: { $case: "started", value: { promptTokens: 10, cachedTokens: 0, queueMs: 0, slot: 0, restoredFromDisk: false } } };
const delta = (text: string, index: number): GenerateEvent => ({ event: { $case: "delta", value: { text, tokenIds: [index], index } } });

describe("turn: an engine that goes silent (pglite, stub engine)", function () {
  this.timeout(60_000);
  let db: Database;
  let stub: Awaited<ReturnType<typeof stubEngine>>;
  let pool: EnginePool;
  let behaviour: (call: ServerWritableStream<GenerateRequest, GenerateEvent>) => void;
  const locks = new ConversationLocks();

  before(async () => {
    db = await openDatabase({ dataDir: await freshPgliteDir(), logger: silentLogger });
    stub = await stubEngine({ ...servingBasics, generate: (call) => behaviour(call) });
    pool = await servingPool([stub.address]);
  });
  after(async () => {
    pool?.close();
    stub?.stop();
    await db?.close();
  });

  async function run(ids: { userId: string; conversationId: string }, content: string, opts: TurnOptions): Promise<TurnEvent[]> {
    const events: TurnEvent[] = [];
    for await (const ev of turn({ repos: db.repos, pool, logger: silentLogger, locks }, { ...ids, content }, opts)) events.push(ev);
    return events;
  }

  it("started, one token, then nothing: cancelled after the stall limit, FAILED TIMEOUT, the conversation free again", async () => {
    let cancelled = false;
    behaviour = (call) => {
      call.write(started);
      call.write(delta("Hola", 0));
      call.on("cancelled", () => (cancelled = true));
    };
    const ids = await userWithConversation(db, "silent");
    const t0 = Date.now();
    const events = await run(ids, "¿Estás ahí?", { maxTokens: 8, stallMs: 400 });
    const err = last(events, "error");
    assert.equal(err.status, "FAILED");
    assert.equal(err.errorType, "TIMEOUT");
    assert.match(err.message, new RegExp(`^engine ${stub.address} stopped sending mid-turn, after 1 generated tokens: .*no event from the engine for 400 ms`));
    assert.ok(Date.now() - t0 < 5000, "the stall was noticed at its limit");
    await waitUntil(() => cancelled, "the engine call cancelled", 5000);
    const req = await db.repos.requests.get(ids.userId, err.requestId);
    assert.deepEqual([req.status, req.errorType, req.error], ["FAILED", "TIMEOUT", err.message]);
    const said = await db.repos.messages.recent(ids.userId, ids.conversationId, 10);
    assert.deepEqual(said.map((m) => [m.role, m.content]), [["USER", "¿Estás ahí?"]]);
    assert.equal(locks.busy(ids.conversationId), false, "the conversation's lock was released");
    assert.equal(pool.status()[0]!.health, "serving", "a silent call alone does not mark the engine down");
  });

  it("queued longer than the stall limit before the engine starts it: not a stall, the turn completes", async () => {
    behaviour = (call) => {
      const t = setTimeout(() => {
        call.write(started);
        ["Uno", " dos", " tres"].forEach((w, i) => call.write(delta(w, i)));
        call.write({ event: { $case: "done", value: { finishReason: FinishReason.FINISH_REASON_STOP, usage: { promptTokens: 10, completionTokens: 3, cachedTokens: 0 }, timings: undefined, stopString: "", error: "" } } });
        call.end();
      }, 900);
      call.on("cancelled", () => clearTimeout(t));
    };
    const ids = await userWithConversation(db, "queued");
    const events = await run(ids, "Cuenta hasta tres", { maxTokens: 8, stallMs: 300 });
    const done = last(events, "done");
    assert.equal(done.status, "COMPLETED");
    assert.equal(done.text, "Uno dos tres");
  });

  it("a consumer that stops pulling longer than the stall limit (a slow reader): not a stall, the turn completes", async () => {
    // The engine sends a token every 50 ms for a second; the 900 ms the
    // turn's reader holds its first token is the reader's time, and must not
    // count as the engine's silence.
    const words = Array.from({ length: 20 }, (_, i) => ` w${i}`);
    behaviour = (call) => {
      call.write(started);
      let i = 0;
      const tick = setInterval(() => {
        if (i < words.length) return void call.write(delta(words[i]!, i++));
        clearInterval(tick);
        call.write({ event: { $case: "done", value: { finishReason: FinishReason.FINISH_REASON_LENGTH, usage: { promptTokens: 10, completionTokens: words.length, cachedTokens: 0 }, timings: undefined, stopString: "", error: "" } } });
        call.end();
      }, 50);
      call.on("cancelled", () => clearInterval(tick));
    };
    const ids = await userWithConversation(db, "slow-reader");
    const events: TurnEvent[] = [];
    for await (const ev of turn({ repos: db.repos, pool, logger: silentLogger, locks }, { ...ids, content: "Cuenta hasta veinte" }, { maxTokens: 20, stallMs: 300 })) {
      events.push(ev);
      if (ev.type === "delta" && events.filter((e) => e.type === "delta").length === 1) await new Promise((r) => setTimeout(r, 900));
    }
    const done = last(events, "done");
    assert.equal(done.status, "COMPLETED");
    assert.equal(done.text, words.join(""));
  });
});

describe("turn: a request the engine refuses (pglite, real engine)", function () {
  this.timeout(60_000);

  it("an invalid JSON schema: FAILED INVALID_REQUEST with the engine's message, not ENGINE_ERROR", async () => {
    const [engine, db] = await Promise.all([
      startEngine({ kind: "inference", args: chatArgs(1024) }),
      openDatabase({ dataDir: await freshPgliteDir(), logger: silentLogger }),
    ]);
    const pool = await servingPool([engine.address!]);
    try {
      const ids = await userWithConversation(db, "refused");
      const events: TurnEvent[] = [];
      const schema = JSON.stringify({ type: "object", properties: { a: { $ref: "#/definitions/missing" } } });
      for await (const ev of turn({ repos: db.repos, pool, logger: silentLogger }, { ...ids, content: "hola" }, { maxTokens: 4, jsonSchema: schema })) events.push(ev);
      const err = last(events, "error");
      assert.equal(err.errorType, "INVALID_REQUEST");
      assert.match(err.message, new RegExp(`^engine ${engine.address} refused the request: Generate on engine .*: INVALID_ARGUMENT: .*json_schema`));
      assert.equal((await db.repos.requests.get(ids.userId, err.requestId)).errorType, "INVALID_REQUEST");
    } finally {
      pool.close();
      await Promise.all([engine.stop(), db.close()]);
    }
  });
});
