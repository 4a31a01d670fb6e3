// Memory extraction, in the manner of mem0: after a conversation has moved
// on, the chat model reads its new messages beside the user's most similar
// stored memories and answers, constrained by a JSON schema, with operations:
// ADD a new fact, UPDATE a stored one (by the short number it was shown
// under), DELETE one the conversation contradicts. Jota applies them to the
// user's memories (memories.ts); the conversation's extraction cursor says
// which messages have been read.
//
// Only the newest 20 messages after the cursor are read, and the cursor moves
// past them only once the model has answered, just before its operations are
// applied: a failure or a crash before (the search, the model) leaves them to
// the retry, and an apply that fails (a memory write) gives them back. A
// retry after a partial apply may apply an operation again, which is
// harmless: an ADD of a remembered text is the same memory, an UPDATE to the
// same text or a DELETE of an erased memory changes nothing. Moving the
// cursor is a compare-and-set, so of two extractions over the same messages
// at once only one applies anything. The model's output is never trusted beyond its
// shape: the schema bounds it (at most 5 operations, 160 characters a fact),
// numbers that name no shown memory are ignored, facts are cleaned and
// deduplicated like any memory. An output cut short or not parseable applies
// nothing; the messages still count as read (a greedy model would answer the
// same again).
import type { Memory, Message } from "@prisma/client";
import type { Repositories } from "../db/repositories";
import { NotFoundError } from "../db/repositories/errors";
import type { EnginePool } from "../engines/pool";
import type { Logger } from "../log";
import { generateFitted, isSaid, PromptDoesNotFitError, quoteMessage } from "./llm";
import { InvalidMemoryError, Memories } from "./memories";

export const EXTRACTION_SCHEMA = {
  type: "object",
  properties: {
    memories: {
      type: "array",
      maxItems: 5,
      items: {
        type: "object",
        properties: {
          event: { type: "string", enum: ["ADD", "UPDATE", "DELETE"] },
          id: { type: "string", maxLength: 3 },
          text: { type: "string", maxLength: 160 },
        },
        required: ["event", "id", "text"],
        additionalProperties: false,
      },
    },
  },
  required: ["memories"],
  additionalProperties: false,
} as const;

const SYSTEM = `You keep the long-term memory of a personal assistant about its user.
Read the conversation and find durable facts about the user worth remembering in later conversations: preferences, personal details, people and places in their life, plans, habits. Leave out greetings, questions, passing remarks and anything about the assistant.
Compare them with what is already remembered (numbered). Answer with JSON only: {"memories": [{"event": "ADD" | "UPDATE" | "DELETE", "id": "<number of a remembered fact, or empty for ADD>", "text": "<the fact, one short sentence about the user>"}]}
ADD a new fact. UPDATE a remembered fact that changed or became more precise (its number, the new text). DELETE a remembered fact the conversation shows is wrong (its number). If nothing is worth remembering, answer {"memories": []}.`;

/** Messages read per extraction (the newest of them that fit the context). */
const MAX_MESSAGES = 20;
/** Stored memories shown to the model. */
const SHOWN_MEMORIES = 10;
/** Tokens the model may answer with: the schema's largest output fits. */
const MAX_OUTPUT_TOKENS = 1024;
/** Characters of one message quoted (a pasted document is not a conversation). */
const MAX_QUOTE = 1500;

export interface ExtractionJob {
  userId: string;
  conversationId: string;
}

export interface ExtractionResult {
  /** Messages read (0: nothing new). */
  read: number;
  added: number;
  updated: number;
  deleted: number;
  /** Operations left out: unknown numbers, empty or invalid facts, duplicates. */
  ignored: number;
  /** Why the model's output applied nothing, when it could not be used. */
  invalidOutput?: string;
  /** Why nothing was done (the conversation is gone, another extraction read these messages). */
  skipped?: string;
}

export interface ExtractionDeps {
  repos: Repositories;
  memories: Memories;
  pool: EnginePool;
  logger: Logger;
}

export interface Operation {
  event: "ADD" | "UPDATE" | "DELETE";
  id: string;
  text: string;
}

/** The operations in the model's output; throws with a reason when it has none usable. */
export function parseOperations(output: string): Operation[] {
  let v: unknown;
  try {
    v = JSON.parse(output);
  } catch {
    throw new Error(`not JSON: ${JSON.stringify(output.slice(0, 120))}`);
  }
  const list = (v as { memories?: unknown } | null)?.memories;
  if (!Array.isArray(list)) throw new Error("no memories array");
  return list.flatMap((o): Operation[] => {
    const { event, id, text } = (o ?? {}) as Record<string, unknown>;
    if ((event !== "ADD" && event !== "UPDATE" && event !== "DELETE") || typeof id !== "string" || typeof text !== "string") return [];
    return [{ event, id: id.trim(), text }];
  });
}

const quote = (m: Message) => quoteMessage(m, MAX_QUOTE, true);

/**
 * Applies the model's operations to the user's memories. `shown` are the
 * memories the model saw, numbered from 1: an UPDATE or DELETE must name one
 * of them, anything else is ignored (counted in `ignored`).
 */
export async function applyOperations(
  memories: Memories,
  where: { userId: string; conversationId: string; requestId?: string },
  shown: Memory[],
  ops: Operation[],
  signal?: AbortSignal,
): Promise<Pick<ExtractionResult, "added" | "updated" | "deleted" | "ignored">> {
  const r = { added: 0, updated: 0, deleted: 0, ignored: 0 };
  for (const op of ops) {
    signal?.throwIfAborted();
    const target = /^\d+$/.test(op.id) ? shown[Number(op.id) - 1] : undefined;
    try {
      if (op.event === "ADD") {
        const { created } = await memories.add(where.userId, { text: op.text, origin: "extracted", conversationId: where.conversationId, requestId: where.requestId });
        if (created) r.added++;
        else r.ignored++;
      } else if (!target) r.ignored++;
      else if (op.event === "UPDATE") {
        await memories.update(where.userId, target.id, op.text);
        r.updated++;
      } else {
        await memories.delete(where.userId, target.id);
        r.deleted++;
      }
    } catch (err) {
      // A fact that is no fact (empty, too long), or a memory the user erased meanwhile.
      if (err instanceof InvalidMemoryError || err instanceof NotFoundError) r.ignored++;
      else throw err;
    }
  }
  return r;
}

/** Reads the conversation's messages after its extraction cursor and applies what the model extracts. */
export async function extractMemories(deps: ExtractionDeps, job: ExtractionJob, signal?: AbortSignal): Promise<ExtractionResult> {
  const { repos, memories } = deps;
  const result: ExtractionResult = { read: 0, added: 0, updated: 0, deleted: 0, ignored: 0 };
  let conversation;
  try {
    conversation = await repos.conversations.get(job.userId, job.conversationId);
  } catch (err) {
    if (err instanceof NotFoundError) return { ...result, skipped: "the conversation was deleted" };
    throw err;
  }
  const cursor = conversation.memoriesThroughId;
  // The newest messages after the cursor: a conversation that grew by more than the window while
  // extraction was off (or behind) is read from its recent end, not from where it stopped.
  const recent = await repos.messages.recent(job.userId, job.conversationId, 2 * MAX_MESSAGES);
  const at = cursor ? recent.findIndex((m) => m.id === cursor) : -1;
  const fresh = recent.slice(at + 1);
  if (fresh.length === 0) return { ...result, skipped: "no new messages" };
  const last = fresh[fresh.length - 1]!;
  const said = fresh.filter(isSaid).slice(-MAX_MESSAGES);
  const userText = said.filter((m) => m.role === "USER").map((m) => m.content).join("\n").slice(-2000);

  // Moves the cursor past these messages: false when another extraction moved it first.
  const markRead = () => repos.conversations.advanceMemories(job.userId, job.conversationId, cursor, last.id);
  if (userText.trim() === "") return (await markRead()) ? result : { ...result, skipped: "another extraction read these messages" };
  const shown = (await memories.search(job.userId, userText, SHOWN_MEMORIES)).map((s) => s.memory);
  // Fewer messages quoted, fewer memories shown: a prompt that must shrink to fit shrinks in both.
  const shownFor = (n: number) => shown.slice(0, Math.min(shown.length, Math.max(1, Math.ceil((n * SHOWN_MEMORIES) / MAX_MESSAGES))));
  const known = (list: Memory[]) => (list.length === 0 ? "(nothing yet)" : list.map((m, i) => `${i + 1}. ${m.text}`).join("\n"));
  let out;
  try {
    out = await generateFitted(
      deps.pool,
      said.length,
      (n) => [
        { role: "system", content: SYSTEM },
        { role: "user", content: `Already remembered:\n${known(shownFor(n))}\n\nConversation:\n${said.slice(-n).map(quote).join("\n")}` },
      ],
      { maxTokens: MAX_OUTPUT_TOKENS, jsonSchema: EXTRACTION_SCHEMA, signal },
    );
  } catch (err) {
    // The same prompt on every retry: these messages are skipped, the next ones will be read.
    if (!(err instanceof PromptDoesNotFitError)) throw err;
    deps.logger.warn("memory extraction skipped messages that do not fit the engine's context", { conversationId: job.conversationId, error: err.message });
    await markRead();
    return { ...result, invalidOutput: err.message };
  }
  result.read = out.used;
  let ops: Operation[] = [];
  if (out.finish === "length") result.invalidOutput = `cut at ${MAX_OUTPUT_TOKENS} tokens`;
  else
    try {
      ops = parseOperations(out.text);
    } catch (err) {
      result.invalidOutput = (err as Error).message;
    }
  if (result.invalidOutput) deps.logger.warn("memory extraction output unusable; nothing applied", { conversationId: job.conversationId, reason: result.invalidOutput });
  const requestId = [...said].reverse().find((m) => m.role === "USER")?.requestId ?? undefined;
  // Claimed only now, with the model's answer in hand: a failed or crashed
  // model run leaves the messages to the next extraction. The claim is a
  // compare-and-set, so of two extractions over the same messages (jobs of
  // two requests, on two workers) only one applies what it found; the other
  // would store the same facts again in other words.
  if (!(await markRead())) return { ...result, read: 0, skipped: "another extraction read these messages, or the conversation was deleted" };
  try {
    Object.assign(result, await applyOperations(memories, { userId: job.userId, conversationId: job.conversationId, requestId }, shownFor(out.used), ops, signal));
  } catch (err) {
    // Given back for the retry (adding a memory twice finds the first one).
    await repos.conversations.advanceMemories(job.userId, job.conversationId, last.id, cursor).catch(() => {});
    throw err;
  }
  return result;
}
