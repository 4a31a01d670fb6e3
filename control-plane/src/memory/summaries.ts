// Summaries of long conversations. When a turn's history no longer fits the
// engine's context (sessions/prompt.ts leaves the oldest messages out), the
// turn asks for a summary through a message ahead of the trimmed ones
// (BuiltPrompt.summarizeThroughId), so that the next several turns carry
// the summary in place of those messages instead of losing them. The chat
// model writes it greedily from the previous summary and the messages after
// it, as many rounds as the messages need to fit its context.
import type { Message } from "@prisma/client";
import type { Repositories } from "../db/repositories";
import { NotFoundError } from "../db/repositories/errors";
import type { EnginePool } from "../engines/pool";
import { GenerationError, generateFitted, isSaid, quoteMessage } from "./llm";

const SYSTEM = `You summarise conversations between a user and their assistant, so that the assistant can continue them without the full history.
Write a brief summary in the language of the conversation: who the user is and what they want, facts and decisions, open questions and anything promised. Plain text, at most 150 words. Keep what the earlier summary says unless the new messages change it.`;

/** Tokens of a summary. */
const MAX_SUMMARY_TOKENS = 256;
/** Messages read per query while looking for the target. */
const PAGE = 500;
/** Characters of one message quoted. */
const MAX_QUOTE = 2000;

export interface SummaryJob {
  userId: string;
  conversationId: string;
  /** The summary must cover the history through this message. */
  throughId: string;
}

export interface SummaryResult {
  /** Messages newly covered. */
  summarized: number;
  /** Generation rounds (one unless the messages did not fit the context at once). */
  rounds: number;
  chars: number;
  skipped?: string;
}

const quote = (m: Message) => quoteMessage(m, MAX_QUOTE);

export async function summarizeConversation(deps: { repos: Repositories; pool: EnginePool }, job: SummaryJob, signal?: AbortSignal): Promise<SummaryResult> {
  const { repos } = deps;
  let conversation;
  try {
    conversation = await repos.conversations.get(job.userId, job.conversationId);
  } catch (err) {
    if (err instanceof NotFoundError) return { summarized: 0, rounds: 0, chars: 0, skipped: "the conversation was deleted" };
    throw err;
  }
  const from = conversation.summaryThroughId;
  // The messages after the current summary, through the target, a page at a time.
  const todo: Message[] = [];
  let found = false;
  for (let cursor = from; !found; ) {
    const page = await repos.messages.after(job.userId, job.conversationId, cursor, PAGE);
    const end = page.findIndex((m) => m.id === job.throughId);
    todo.push(...(end < 0 ? page : page.slice(0, end + 1)).filter(isSaid));
    found = end >= 0;
    if (page.length < PAGE) break;
    cursor = page[page.length - 1]!.id;
  }
  // Not after the current summary's end: already covered (or not a message of this conversation).
  if (!found) return { summarized: 0, rounds: 0, chars: 0, skipped: "already summarized through that message" };

  let summary = conversation.summary ?? "";
  let rounds = 0;
  for (let i = 0; i < todo.length; ) {
    const rest = todo.slice(i);
    const out = await generateFitted(
      deps.pool,
      rest.length,
      // The oldest messages that fit: `build(n)` quotes the first n of those left.
      (n) => [
        { role: "system", content: SYSTEM },
        {
          role: "user",
          content: `${summary ? `Summary so far:\n${summary}\n\n` : ""}New messages:\n${rest.slice(0, n).map(quote).join("\n")}\n\nThe updated summary:`,
        },
      ],
      { maxTokens: MAX_SUMMARY_TOKENS, signal },
    );
    const text = out.text.trim();
    // Nothing written would count these messages as covered by a summary that does not cover them.
    if (text === "") throw new GenerationError(`the model wrote no summary of ${out.used} messages`);
    summary = text;
    i += out.used;
    rounds++;
  }
  if (summary === "") return { summarized: 0, rounds, chars: 0, skipped: "no messages to summarize" };
  // Only over the summary this one continues: a newer one written meanwhile stays.
  if (!(await repos.conversations.replaceSummary(job.userId, job.conversationId, from, summary, job.throughId)))
    return { summarized: 0, rounds, chars: summary.length, skipped: "another summary was stored meanwhile" };
  return { summarized: todo.length, rounds, chars: summary.length };
}
