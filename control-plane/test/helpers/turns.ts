// Shared set-up of the turn tests: real engines on the tiny model, a pool
// over them, a database, and a user with a conversation.
import { EnginePool, type EngineStatus } from "../../src/engines/pool";
import { silentLogger } from "../../src/log";
import { turn, type TurnEvent, type TurnOptions } from "../../src/sessions/turn";
import type { Database } from "../../src/db/database";
import { requireFile, testModel } from "./engines";

export const FAST_POOL = { infoIntervalMs: 200, backoffInitialMs: 100, backoffMaxMs: 1000, logger: silentLogger };

export const chatArgs = (ctx: number, slots = 2) => [
  "--model",
  requireFile(testModel("tiny-chat.gguf")),
  "--threads",
  "1",
  "--slots",
  String(slots),
  "--ctx-size",
  String(ctx),
];

/** A pool over `addresses`, resolved once every one of them serves. */
export async function servingPool(addresses: string[], token = ""): Promise<EnginePool> {
  const pool = new EnginePool({ inference: addresses, transcription: [], token, ...FAST_POOL });
  await waitUntil(() => addresses.every((a) => pool.status().find((s: EngineStatus) => s.address === a)?.health === "serving"), "engines serving", 30_000);
  return pool;
}

export async function userWithConversation(db: Database, name = "u") {
  const user = await db.repos.users.create({ username: name });
  const conv = await db.repos.conversations.create(user.id);
  return { userId: user.id, conversationId: conv.id };
}

/** Runs a turn to its end, collecting its events (accepted, started, deltas, done or error); `onEvent` may act mid-stream. */
export async function runTurn(
  db: Database,
  pool: EnginePool,
  ids: { userId: string; conversationId: string },
  content: string,
  opts: TurnOptions = {},
  onEvent?: (ev: TurnEvent, all: TurnEvent[]) => void | Promise<void>,
): Promise<TurnEvent[]> {
  const events: TurnEvent[] = [];
  for await (const ev of turn({ repos: db.repos, pool, logger: silentLogger }, { ...ids, content }, opts)) {
    events.push(ev);
    await onEvent?.(ev, events);
  }
  return events;
}

export const deltas = (events: TurnEvent[]) => events.filter((e) => e.type === "delta").map((e) => (e as { text: string }).text);

export function last<T extends TurnEvent["type"]>(events: TurnEvent[], type: T): Extract<TurnEvent, { type: T }> {
  const ev = events[events.length - 1];
  if (ev?.type !== type) throw new Error(`the last event is ${JSON.stringify(ev)}, not ${type}`);
  return ev as Extract<TurnEvent, { type: T }>;
}

export async function waitUntil(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
