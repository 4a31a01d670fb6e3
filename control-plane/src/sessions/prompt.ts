// The prompt of a chat turn: one system message (the system prompt, then the
// retrieved memory and context, then the summary of older history), followed
// by the newest part of the conversation that fits the engine's context.
//
// Fitting is measured in the engine's own tokens (CountTokens applies the
// model's chat template), never guessed from characters: a prompt built here
// is never refused by the engine for its length. Each message's count is
// stored on it (messages.tokens) the first time it is measured, so a turn
// normally counts only its new message, plus one check of the whole prompt
// when it comes near the limit.
import type { Conversation, Message } from "@prisma/client";
import type { MessageRepository } from "../db/repositories";
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

export interface PromptInput {
  userId: string;
  conversation: Pick<Conversation, "id" | "summary" | "summaryThroughId">;
  systemPrompt: string;
  /** Retrieved memory and context for this turn (filled by retrieval, a later issue; empty until then). */
  context?: string[];
  /** Tokens the prompt may take: the engine's context minus what is reserved for the reply. */
  budget: number;
  /** How many stored messages are considered at most. */
  historyLimit: number;
}

export interface BuiltPrompt {
  messages: ChatMessage[];
  /** Prompt tokens under the chat template (exact when `verified`, else an upper estimate). */
  tokens: number;
  verified: boolean;
  /** Stored messages in the prompt, and how many older ones were left out to fit. */
  historyMessages: number;
  trimmedMessages: number;
  summaryIncluded: boolean;
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

/**
 * Builds the prompt from the stored history (the turn's own user message is
 * its newest message), trimmed to `budget` tokens of `engine`.
 */
export async function buildPrompt(engine: InferenceEngineClient, messages: MessageRepository, p: PromptInput): Promise<BuiltPrompt> {
  let history = await messages.recent(p.userId, p.conversation.id, p.historyLimit);
  // What the summary covers is not sent again.
  const summary = p.conversation.summary ?? undefined;
  if (summary && p.conversation.summaryThroughId) {
    const i = history.findIndex((m) => m.id === p.conversation.summaryThroughId);
    if (i >= 0) history = history.slice(i + 1);
  }
  const system = systemMessage(p.systemPrompt, p.context ?? [], summary);

  // Per-message counts: stored ones reused, missing ones measured (in parallel) and stored.
  const count = async (items: ChatMessage[], noGenerationPrompt: boolean) =>
    (await engine.countTokens({ messages: items, chatTemplate: "", noGenerationPrompt })).tokens;
  const chat = history.map((m): ChatMessage => ({ role: ROLE[m.role], content: m.content }));
  const [systemTokens, ...costs] = await Promise.all([
    count([system], true),
    ...history.map(async (m, i) => {
      if (m.tokens != null) return m.tokens;
      const t = await count([chat[i]!], true);
      await messages.setTokens(p.userId, m.id, t).catch(() => {}); // only a cache: the turn goes on without it
      return t;
    }),
  ]);

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
    const exact = await count([system, ...chat.slice(history.length - 1)], false);
    if (exact > p.budget) throw new PromptTooLongError(exact, p.budget);
    return done(exact, true);
  }
  if (estimate + VERIFY_MARGIN <= p.budget) return done(estimate, false);

  // Near the limit: the template's real total decides, dropping the oldest until it fits.
  for (;;) {
    const exact = await count([system, ...chat.slice(history.length - kept)], false);
    if (exact <= p.budget || kept === 1) {
      if (exact > p.budget) throw new PromptTooLongError(exact, p.budget);
      return done(exact, true);
    }
    kept--;
    while (kept > 1 && history[history.length - kept]!.role !== "USER") kept--;
  }

  function done(tokens: number, verified: boolean): BuiltPrompt {
    return {
      messages: [system, ...chat.slice(history.length - kept)],
      tokens,
      verified,
      historyMessages: kept,
      trimmedMessages: history.length - kept,
      summaryIncluded: summary !== undefined,
    };
  }
}
