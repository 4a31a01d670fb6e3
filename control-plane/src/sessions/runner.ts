// Turns that outlive their caller. The gateway starts every turn here rather
// than iterating turn() itself, for three reasons:
//   - a REST caller that stops waiting (past the synchronous limit) gets the
//     request id and state PROCESSING while the turn runs on to its end
//     (chat-app users ask for exactly this: generation should not die when
//     the user leaves);
//   - any number of readers can follow one turn, each from its first event:
//     the original caller, a later "stream the result" call, a dashboard;
//   - the turn is driven by the runner, so a slow reader never slows the
//     engine: events wait in the turn's log (bounded by max_tokens) and each
//     reader catches up at its own pace.
// A finished turn stays findable for `keepFinishedMs`; after that its outcome
// is in the database (request + messages), which is the source of truth.
import { NotFoundError } from "../db/repositories";
import { ConversationLocks } from "./locks";
import { turn, type TurnAcceptedEvent, type TurnDeps, type TurnDoneEvent, type TurnErrorEvent, type TurnEvent, type TurnInput, type TurnOptions } from "./turn";

export type TurnResult = TurnDoneEvent | TurnErrorEvent;

export class TurnHandle {
  private readonly log: TurnEvent[] = [];
  private wake: (() => void) | undefined;
  private wakeP: Promise<void> | undefined;
  private ended = false;
  private readonly ac = new AbortController();
  private detachedP: Promise<void> | undefined;
  /** Resolves once the request and user message are stored; rejects when the turn could not begin (unknown conversation, busy, aborted wait). */
  readonly accepted: Promise<TurnAcceptedEvent>;
  /** The last event: done (COMPLETED / ABORTED) or error (FAILED). Rejects only when `accepted` does. */
  readonly result: Promise<TurnResult>;
  requestId: string | undefined;
  finishedAt: number | undefined;

  constructor(
    private readonly deps: TurnDeps,
    readonly input: TurnInput,
    opts: Omit<TurnOptions, "signal">,
  ) {
    let accept!: (e: TurnAcceptedEvent) => void;
    let refuse!: (err: unknown) => void;
    this.accepted = new Promise((res, rej) => ((accept = res), (refuse = rej)));
    this.result = this.pump(turn(deps, input, { ...opts, signal: this.ac.signal }), accept, refuse);
    this.accepted.catch(() => {}); // observed through `result` too
    this.result.catch(() => {});
  }

  private async pump(it: AsyncGenerator<TurnEvent>, accept: (e: TurnAcceptedEvent) => void, refuse: (err: unknown) => void): Promise<TurnResult> {
    let last: TurnEvent | undefined;
    try {
      for await (const ev of it) {
        if (ev.type === "accepted") {
          this.requestId = ev.requestId;
          accept(ev);
        }
        this.push(ev);
        last = ev;
      }
    } catch (err) {
      refuse(err);
      throw err;
    } finally {
      this.ended = true;
      this.finishedAt = Date.now();
      this.notify();
    }
    if (last?.type !== "done" && last?.type !== "error") throw new Error(`turn ended without a result (last event: ${last?.type})`);
    return last;
  }

  private push(ev: TurnEvent) {
    this.log.push(ev);
    this.notify();
  }

  private notify() {
    const w = this.wake;
    this.wake = undefined;
    this.wakeP = undefined;
    w?.();
  }

  private changed(): Promise<void> {
    this.wakeP ??= new Promise<void>((r) => (this.wake = r));
    return this.wakeP;
  }

  get finished(): boolean {
    return this.ended;
  }

  /** How many events the turn has logged so far (events() yields them first). */
  get eventCount(): number {
    return this.log.length;
  }

  /** Whether the last event logged is the turn's result (done or error); a turn that threw ends without one. */
  get hasResult(): boolean {
    const last = this.log.at(-1);
    return last?.type === "done" || last?.type === "error";
  }

  /** Every event from the turn's first, then live ones until its end. Stopping the iteration does not stop the turn. */
  async *events(signal?: AbortSignal): AsyncGenerator<TurnEvent, void, undefined> {
    let i = 0;
    for (;;) {
      while (i < this.log.length) yield this.log[i++]!;
      if (this.ended || signal?.aborted) return;
      const changed = this.changed();
      if (signal) {
        await new Promise<void>((resolve) => {
          const onAbort = () => resolve();
          signal.addEventListener("abort", onAbort, { once: true });
          void changed.then(() => {
            signal.removeEventListener("abort", onAbort);
            resolve();
          });
        });
      } else await changed;
    }
  }

  /** Ends the turn ABORTED (partial reply kept); the engine stops decoding. */
  abort(reason = "aborted by the caller"): void {
    this.ac.abort(new Error(reason));
  }

  /** The caller stopped waiting: the request is recorded PROCESSING and the turn runs on. */
  detach(): Promise<void> {
    this.detachedP ??= (async () => {
      const { requestId } = await this.accepted;
      if (this.ended) return;
      await this.deps.repos.requests.transition(this.input.userId, requestId, "PROCESSING").catch(() => {
        // Already final (the turn ended meanwhile): nothing to record.
      });
    })();
    return this.detachedP;
  }
}

export interface RunnerOptions {
  /** How long a finished turn stays findable in memory (default 10 minutes). */
  keepFinishedMs?: number;
}

export class TurnRunner {
  private readonly turns = new Map<string, TurnHandle>();
  private readonly all = new Set<TurnHandle>();
  private readonly deps: TurnDeps;
  private readonly keepFinishedMs: number;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(deps: TurnDeps, opts: RunnerOptions = {}) {
    this.deps = { ...deps, locks: deps.locks ?? new ConversationLocks() };
    this.keepFinishedMs = opts.keepFinishedMs ?? 10 * 60_000;
  }

  /** Starts a turn in the background; await `handle.accepted` for its request id. */
  start(input: TurnInput, opts: Omit<TurnOptions, "signal"> = {}): TurnHandle {
    if (this.closed) throw new Error("the turn runner is closed");
    const h = new TurnHandle(this.deps, input, opts);
    this.all.add(h);
    h.accepted.then(
      (a) => this.turns.set(a.requestId, h),
      () => this.all.delete(h),
    );
    h.result.then(
      () => this.all.delete(h),
      () => this.all.delete(h),
    );
    this.sweeper ??= setInterval(() => this.sweep(), Math.min(60_000, this.keepFinishedMs)).unref();
    return h;
  }

  /** A running or recently finished turn of this user (undefined when it is not in memory: read the database). */
  find(userId: string, requestId: string): TurnHandle | undefined {
    const h = this.turns.get(requestId);
    return h && h.input.userId === userId ? h : undefined;
  }

  /** Aborts one of the user's running turns; NotFoundError when there is none by that id. */
  abort(userId: string, requestId: string, reason?: string): TurnHandle {
    const h = this.find(userId, requestId);
    if (!h || h.finished) throw new NotFoundError("running request", requestId);
    h.abort(reason);
    return h;
  }

  /** Turns not yet finished. */
  get running(): number {
    return this.all.size;
  }

  /** Aborts every running turn and waits until each has recorded its outcome. */
  async close(reason = "the server is stopping"): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    const pending = [...this.all];
    for (const h of pending) h.abort(reason);
    await Promise.allSettled(pending.map((h) => h.result));
  }

  private sweep() {
    const cutoff = Date.now() - this.keepFinishedMs;
    for (const [id, h] of this.turns) if (h.finishedAt !== undefined && h.finishedAt < cutoff) this.turns.delete(id);
  }
}
