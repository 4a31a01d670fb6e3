// One turn at a time per conversation. Two messages sent at once to the same
// conversation would otherwise interleave: the second one's prompt would miss
// the first one's reply, and both would fight over the engine session that
// holds the conversation's KV cache. Turns of different conversations never
// wait for each other.
//
// The lock lives in this process. Several gateways over one database keep the
// guarantee only while a conversation's turns reach the same gateway (the
// scale-out notes in the README say so); the stored order of messages stays
// consistent either way, because every write is its own transaction.
import { ConflictError } from "../db/repositories";

export class ConversationBusyError extends ConflictError {
  constructor(readonly conversationId: string) {
    super(`conversation ${conversationId} already has a turn running`);
    this.name = "ConversationBusyError";
  }
}

export class ConversationLocks {
  /** The tail of each conversation's queue: resolves when the last holder releases. */
  private readonly tails = new Map<string, Promise<void>>();

  /** True while a turn holds (or waits for) the conversation. */
  busy(conversationId: string): boolean {
    return this.tails.has(conversationId);
  }

  /**
   * Waits for the conversation to be free (or, with `wait: false`, throws
   * ConversationBusyError at once) and returns the release function. An
   * aborted `signal` stops the wait with the signal's reason.
   */
  async acquire(conversationId: string, opts: { wait?: boolean; signal?: AbortSignal } = {}): Promise<() => void> {
    const previous = this.tails.get(conversationId);
    if (previous && opts.wait === false) throw new ConversationBusyError(conversationId);
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = (previous ?? Promise.resolve()).then(() => mine);
    this.tails.set(conversationId, tail);
    const done = () => {
      release();
      if (this.tails.get(conversationId) === tail) this.tails.delete(conversationId);
    };
    if (previous) {
      try {
        await abortable(previous, opts.signal);
      } catch (err) {
        // Leave the queue without blocking those behind: they wait for `previous` through `mine`.
        void previous.then(done);
        throw err;
      }
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      done();
    };
  }
}

function abortable(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason ?? new Error("aborted"));
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new Error("aborted"));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}
