// One-off generations for background work (memory extraction, summaries):
// the chat engine, greedy, no KV session (a conversation's cache must not be
// evicted for them), and a prompt fitted to the engine's context by quoting
// fewer of the messages it is about.
import type { InferenceEngineClient } from "../engines/clients";
import type { EngineLease, EnginePool } from "../engines/pool";
import type { Message } from "@prisma/client";
import { FinishReason, type ChatMessage, type GenerateRequest } from "../gen/jota/v1/inference";

export class GenerationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GenerationError";
  }
}

/** Not even the smallest prompt fits the engine's context: the same on every retry. */
export class PromptDoesNotFitError extends GenerationError {
  constructor(message: string) {
    super(message);
    this.name = "PromptDoesNotFitError";
  }
}

export interface Generated {
  text: string;
  /** "stop" (the model ended, or the grammar was complete) or "length" (cut at maxTokens). */
  finish: "stop" | "length";
}

/**
 * Runs `build(n)` (the prompt quoting `n` of `total` items: the caller
 * picks which) with the largest n whose prompt fits the engine's context
 * beside `maxTokens`, and generates. Throws GenerationError when not even
 * one item fits.
 */
export async function generateFitted(
  pool: EnginePool,
  total: number,
  build: (n: number) => ChatMessage[],
  opts: { maxTokens: number; jsonSchema?: object; requestId?: string; signal?: AbortSignal },
): Promise<Generated & { used: number }> {
  const lease = pool.pickInference();
  let failure: unknown;
  try {
    // A small context keeps at least half for the prompt.
    const maxTokens = Math.max(1, Math.min(opts.maxTokens, Math.floor(lease.contextSize / 2)));
    const budget = lease.contextSize - maxTokens - 1;
    let n = total;
    for (;;) {
      opts.signal?.throwIfAborted();
      const tokens = (await lease.client.countTokens({ messages: build(n), chatTemplate: "", noGenerationPrompt: false })).tokens;
      if (tokens <= budget) break;
      if (n <= 1) throw new PromptDoesNotFitError(`the prompt needs ${tokens} tokens; the engine's context (${lease.contextSize}) leaves ${budget} beside the reply`);
      // Proportionally fewer, at least one fewer.
      n = Math.max(1, Math.min(n - 1, Math.floor((n * budget) / tokens)));
    }
    return { ...(await generate(lease, build(n), { ...opts, maxTokens })), used: n };
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    lease.release(failure instanceof GenerationError ? undefined : failure);
  }
}

async function generate(
  lease: EngineLease<InferenceEngineClient>,
  messages: ChatMessage[],
  opts: { maxTokens: number; jsonSchema?: object; requestId?: string; signal?: AbortSignal },
): Promise<Generated> {
  const req: GenerateRequest = {
    input: { $case: "messages", value: { items: messages } },
    sessionId: "",
    sampling: { temperature: 0 },
    maxTokens: opts.maxTokens,
    stop: [],
    constraint: opts.jsonSchema ? { $case: "jsonSchema", value: JSON.stringify(opts.jsonSchema) } : undefined,
    chatTemplate: "",
    noGenerationPrompt: false,
    requestId: opts.requestId ?? "",
  };
  let text = "";
  for await (const ev of lease.client.generate(req, { signal: opts.signal })) {
    const e = ev.event;
    if (e?.$case === "delta") text += e.value.text;
    else if (e?.$case === "done") {
      if (e.value.error) throw new GenerationError(`engine ${lease.address}: ${e.value.error}`);
      return { text, finish: e.value.finishReason === FinishReason.FINISH_REASON_LENGTH ? "length" : "stop" };
    }
  }
  throw new GenerationError(`engine ${lease.address} ended the stream without a result`);
}

/** The messages background work quotes: what the user and the assistant said (not system or tool messages). */
export const isSaid = (m: Pick<Message, "role">): boolean => m.role === "USER" || m.role === "ASSISTANT";

/** "User: …" / "Assistant: …", cut at `maxChars` (a pasted document is not a conversation), optionally on one line. */
export function quoteMessage(m: Pick<Message, "role" | "content">, maxChars: number, oneLine = false): string {
  const t = m.content.length > maxChars ? `${m.content.slice(0, maxChars)}…` : m.content;
  return `${m.role === "USER" ? "User" : "Assistant"}: ${(oneLine ? t.replace(/\s+/g, " ") : t).trim()}`;
}
