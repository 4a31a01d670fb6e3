// Stateless OpenAI clients and Jota's stored conversations.
//
// An OpenAI client resends the whole history with every call. Stored as a
// new conversation each time, a chat of n turns would leave n conversations
// holding 1 + 2 + … + n copies of its messages, and every call would prefill
// the whole history again, since each new conversation has a new engine
// session. So a call without X-Jota-Conversation continues the stored
// conversation whose history is exactly the call's history (what the last
// completed call of that chat left: its history, its user message and the
// reply it was sent), and stores only its new user message.
//
// The index is a digest per conversation, set when a /v1 turn completes and
// cleared when a call claims it, so two calls resending the same history
// never continue one conversation twice (the second makes its own). A claimed
// conversation is continued only if its stored messages still hash to the
// digest: the conversation may have moved on through another interface
// since. Content is compared trimmed, since some clients strip the reply
// they send back; the stored (untrimmed) text stays the prompt's history.
import { createHash } from "node:crypto";
import type { Repositories } from "@jota/control-plane";

export interface Said {
  role: string;
  content: string;
}

export function historyDigest(history: readonly Said[]): string {
  const h = createHash("sha256");
  for (const m of history) h.update(JSON.stringify([m.role, m.content.trim()])).update("\n");
  return h.digest("hex");
}

export interface Continuation {
  conversationId: string;
  /** The digest it was claimed with: given back if the call stores nothing. */
  digest: string;
}

/**
 * The caller's stored conversation whose history is `history`, claimed for
 * this call; undefined when there is none (the call makes a new one). An
 * empty history (a chat's first call) never continues anything.
 */
export async function claimContinuation(repos: Repositories, userId: string, history: readonly Said[]): Promise<Continuation | undefined> {
  if (history.length === 0) return undefined;
  const digest = historyDigest(history);
  const conv = await repos.conversations.claimByDigest(userId, digest);
  if (!conv) return undefined;
  // One message more than expected is enough to see the history has grown.
  const stored = await repos.messages.after(userId, conv.id, null, history.length + 1);
  if (stored.length !== history.length || historyDigest(stored) !== digest) return undefined; // stale: it stays cleared
  return { conversationId: conv.id, digest };
}

/** Gives a claimed conversation back, for a call that stored nothing in it. */
export async function releaseContinuation(repos: Repositories, userId: string, c: Continuation): Promise<void> {
  await repos.conversations.setDigest(userId, c.conversationId, c.digest, null);
}

/** After a completed turn: `history` (the call's, its user message and the reply) is what the chat's next call will resend. */
export async function recordContinuation(repos: Repositories, userId: string, conversationId: string, history: readonly Said[]): Promise<void> {
  await repos.conversations.setDigest(userId, conversationId, historyDigest(history), null);
}
