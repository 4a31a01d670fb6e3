// The prompt of a chat turn: one system message (the system prompt, then the
// retrieved memory and context, then the summary of older history), followed
// by the newest part of the conversation that fits the engine's context.
//
// Fitting is measured in the engine's own tokens (CountTokens applies the
// model's chat template), never guessed: a prompt built here is never refused
// by the engine for its length. But counting is an engine round trip, and it
// sits before the engine call, on every turn's time to first token. So:
// - each message's exact count is stored on it (messages.tokens) once known;
// - a message not counted yet is bounded from above (its UTF-8 bytes, as no
//   tokenizer makes more tokens than bytes, plus what the template adds to a
//   message of its role, plus slack), and the system prompt's count and the
//   per-role template costs are cached per engine;
// - when the bounded total fits with a margin, the prompt goes out as it is,
//   and the turn counts the uncounted messages (`toCount`) once the reply
//   has streamed, storing them with its outcome; only near the limit is
//   anything counted first, exactly.
import type { Conversation, Message } from "@prisma/client";
import type { InferenceEngineClient } from "../engines/clients";
import type { ChatMessage } from "../gen/jota/v1/inference";

export const DEFAULT_SYSTEM_PROMPT =
  "You are Jota, a helpful personal assistant. Answer in the language the user writes in (often Spanish), briefly and accurately.";

/** A message that is too long to fit the engine's context even on its own. */
export class PromptTooLongError extends Error {
  constructor(
    readonly tokens: number,
    readonly budget: number,
  ) {
    super(`the message needs ${tokens} prompt tokens; the engine's context leaves ${budget} for the prompt`);
    this.name = "PromptTooLongError";
  }
}

/** A message of the history, stored or about to be (the turn's own). */
export interface PromptMessage {
  id: string;
  role: Message["role"];
  content: string;
  /** Its exact count under the chat template; null until counted. */
  tokens: number | null;
}

export interface PromptInput {
  conversation: Pick<Conversation, "summary" | "summaryThroughId">;
  systemPrompt: string;
  /** Retrieved memory and context for this turn (filled by retrieval, a later issue; empty until then). */
  context?: string[];
  /** Tokens the prompt may take: the engine's context minus what is reserved for the reply. */
  budget: number;
  /** The history, oldest first, ending with the turn's own message. */
  history: PromptMessage[];
}

export interface BuiltPrompt {
  messages: ChatMessage[];
  /** Prompt tokens under the chat template (exact when `verified`, else an upper bound). */
  tokens: number;
  verified: boolean;
  /** History messages in the prompt, and how many older ones were left out to fit. */
  historyMessages: number;
  trimmedMessages: number;
  summaryIncluded: boolean;
  /** Messages whose count is unknown and was not needed: to be counted later (countMessages) and stored. */
  toCount: PromptMessage[];
  /** Messages counted while building: to be stored. */
  counted: { id: string; tokens: number }[];
  /**
   * When messages were left out: the message a summary should cover through
   * (memory/summaries.ts): past the trimmed ones, half-way into the window
   * that was sent, so that the next turns find the summary in place of what
   * they must leave out, rather than asking for a new one every turn.
   */
  summarizeThroughId?: string;
}

/** Below this many tokens of headroom the sum of per-message counts is checked by counting the whole prompt. */
const VERIFY_MARGIN = 64;

export function systemMessage(systemPrompt: string, context: string[], summary: string | null | undefined): ChatMessage {
  const parts = [systemPrompt.trim()];
  if (context.length > 0) parts.push(`Relevant context:\n${context.map((c) => c.trim()).join("\n\n")}`);
  if (summary) parts.push(`Summary of the earlier conversation:\n${summary.trim()}`);
  return { role: "system", content: parts.filter(Boolean).join("\n\n") };
}

const ROLE: Record<Message["role"], string> = { SYSTEM: "system", USER: "user", ASSISTANT: "assistant", TOOL: "tool" };

/** Counts of one engine's template costs and system prompts: key -> tokens. */
const counts = new WeakMap<InferenceEngineClient, Map<string, { tokens: number; at: number }>>();
/** An engine restarted with another model at the same address makes cached counts wrong; they expire. */
const COUNT_TTL_MS = 10 * 60_000;

async function countCached(engine: InferenceEngineClient, key: string, items: ChatMessage[]): Promise<number> {
  let m = counts.get(engine);
  if (!m) counts.set(engine, (m = new Map()));
  const hit = m.get(key);
  if (hit && Date.now() - hit.at < COUNT_TTL_MS) return hit.tokens;
  const tokens = await count(engine, items, true);
  if (m.size >= 64) m.clear(); // a handful of system prompts per deployment; never grows without bound
  m.set(key, { tokens, at: Date.now() });
  return tokens;
}

async function count(engine: InferenceEngineClient, items: ChatMessage[], noGenerationPrompt: boolean): Promise<number> {
  return (await engine.countTokens({ messages: items, chatTemplate: "", noGenerationPrompt })).tokens;
}

/** Exact counts of messages (in parallel), for storing on them. */
export async function countMessages(engine: InferenceEngineClient, messages: PromptMessage[]): Promise<{ id: string; tokens: number }[]> {
  return Promise.all(messages.map(async (m) => ({ id: m.id, tokens: await count(engine, [{ role: ROLE[m.role], content: m.content }], true) })));
}

/** Slack on a bound: tokens that merge differently where the content meets the template. */
const BOUND_SLACK = 4;

/**
 * Builds the prompt from the history (the turn's own message last), trimmed
 * to `budget` tokens of `engine`.
 */
export async function buildPrompt(engine: InferenceEngineClient, p: PromptInput): Promise<BuiltPrompt> {
  let history = p.history;
  // What the summary covers is not sent again.
  const summary = p.conversation.summary ?? undefined;
  if (summary && p.conversation.summaryThroughId) {
    const i = history.findIndex((m) => m.id === p.conversation.summaryThroughId);
    if (i >= 0) history = history.slice(i + 1);
  }
  // The window starts at a user message, whether or not it is trimmed: some
  // chat templates (Gemma's, Mistral's) refuse a conversation that opens with
  // the assistant, and the history limit (forTurn) can cut a question from
  // its answer.
  let lead = 0;
  while (lead < history.length - 1 && history[lead]!.role !== "USER") lead++;
  if (lead > 0) history = history.slice(lead);
  const system = systemMessage(p.systemPrompt, p.context ?? [], summary);
  const chat = history.map((m): ChatMessage => ({ role: ROLE[m.role], content: m.content }));

  // First, with bounds for what was never counted: usually enough.
  const roles = [...new Set(history.filter((m) => m.tokens == null).map((m) => m.role))];
  const [systemTokens, ...overheads] = await Promise.all([
    countCached(engine, `system\u0000${system.content}`, [system]),
    ...roles.map((r) => countCached(engine, `role\u0000${r}`, [{ role: ROLE[r], content: "" }])),
  ]);
  const overhead = new Map(roles.map((r, i) => [r, overheads[i]!]));
  const bound = (m: PromptMessage) => m.tokens ?? overhead.get(m.role)! + Buffer.byteLength(m.content, "utf8") + BOUND_SLACK;
  const total = systemTokens! + 8 + history.reduce((n, m) => n + bound(m), 0);
  if (total + VERIFY_MARGIN <= p.budget)
    return {
      messages: [system, ...chat],
      tokens: total,
      verified: false,
      historyMessages: history.length,
      trimmedMessages: 0,
      summaryIncluded: summary !== undefined,
      toCount: history.filter((m) => m.tokens == null),
      counted: [],
    };

  // Near the limit: every message counted exactly (in parallel; stored by the turn), then trimmed.
  const measured = new Map((await countMessages(engine, history.filter((m) => m.tokens == null))).map((c) => [c.id, c.tokens]));
  const costs = history.map((m) => m.tokens ?? measured.get(m.id)!);
  const counted = [...measured].map(([id, tokens]) => ({ id, tokens }));

  // Newest first, as many as fit (a template adds a few tokens for the generation prompt: the margin).
  let kept = 0;
  let estimate = systemTokens! + 8;
  for (let i = history.length - 1; i >= 0; i--) {
    if (estimate + costs[i]! > p.budget && kept > 0) break;
    estimate += costs[i]!;
    kept++;
  }
  // The window starts at a user message: some chat templates refuse a conversation that opens with the assistant.
  while (kept > 1 && history[history.length - kept]!.role !== "USER") estimate -= costs[history.length - kept--]!;
  if (history.length === 0) return done(estimate, false);
  if (estimate > p.budget) {
    // Only the newest message is left and it does not fit by the estimate: check exactly before refusing.
    const exact = await count(engine, [system, ...chat.slice(history.length - 1)], false);
    if (exact > p.budget) throw new PromptTooLongError(exact, p.budget);
    return done(exact, true);
  }
  if (estimate + VERIFY_MARGIN <= p.budget) return done(estimate, false);

  // Near the limit: the template's real total decides, dropping the oldest until it fits.
  for (;;) {
    const exact = await count(engine, [system, ...chat.slice(history.length - kept)], false);
    if (exact <= p.budget || kept === 1) {
      if (exact > p.budget) throw new PromptTooLongError(exact, p.budget);
      return done(exact, true);
    }
    kept--;
    while (kept > 1 && history[history.length - kept]!.role !== "USER") kept--;
  }

  function done(tokens: number, verified: boolean): BuiltPrompt {
    const trimmed = history.length - kept;
    // Ends before a user message, and never on the turn's own (the last).
    let through = trimmed - 1 + Math.floor(kept / 2);
    while (through < history.length - 2 && history[through + 1]!.role !== "USER") through++;
    return {
      ...(trimmed > 0 && through <= history.length - 2 ? { summarizeThroughId: history[through]!.id } : {}),
      messages: [system, ...chat.slice(history.length - kept)],
      tokens,
      verified,
      historyMessages: kept,
      trimmedMessages: history.length - kept,
      summaryIncluded: summary !== undefined,
      toCount: [],
      counted,
    };
  }
}
