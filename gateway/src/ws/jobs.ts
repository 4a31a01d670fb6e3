// Ingest jobs watched over the chat socket (watch_job / unwatch_job).
//
// One BullMQ QueueEvents per gateway process (stack.ts's Jobs.events) hears
// every change of every ingest job; JobEvents fans the changes out to the
// watches that want each job. A change is only a nudge: the job's status is
// read again (IngestQueue.getJob) and that read is what a watch sends, so a
// frame always carries the whole, consistent status, and getJob's user check
// applies to every read.
//
// Progress events can be many (several a second per running job), so:
//   - reads are coalesced per (user, job): at most one read in flight; the
//     changes that come meanwhile make one more read after it, whatever their
//     number. Sockets watching the same job share the reads;
//   - a watch sends a status only when it differs from the last one it sent;
//   - a watch's frames go through its socket's Outbox as job frames: past the
//     high water mark one frame per job waits and a newer status takes its
//     place (the latest wins), so a slow reader costs one frame per watch.
//
// A watch subscribes before its first read, and only reads started after it
// subscribed count for it: a change between the read and the subscription
// cannot be missed. It ends by itself once it has sent a final state
// (completed or failed), when the job is gone, when a read fails, on
// unwatch_job, and when the socket closes.
import type { QueueEvents } from "bullmq";
import type { IngestJobStatus, IngestQueue, Logger } from "@jota/control-plane";
import type { Principal } from "../auth/principal";
import { hasScope } from "../auth/principal";
import { ApiError, toApiError } from "../http/errors";
import { errorFrame, jobFrame, type ErrorFrame, type FrameId, type WatchJobFrame } from "./frames";
import type { Outbox } from "./outbox";

/** Watches one socket may hold at once (default). */
export const DEFAULT_MAX_JOB_WATCHES = 32;

/** The QueueEvents events that name a job whose status may have changed. */
const JOB_EVENTS = ["added", "waiting", "active", "progress", "completed", "failed", "delayed", "stalled", "removed", "retries-exhausted", "waiting-children"] as const;

const FINAL = new Set<IngestJobStatus["state"]>(["completed", "failed"]);

/** What JobEvents tells a watch: the result of a read started after it subscribed. */
export interface JobListener {
  /** The job's status; undefined when it does not exist or is not the user's. */
  status(s: IngestJobStatus | undefined): void;
  /** The read failed (Redis trouble). */
  readFailed(err: unknown): void;
}

/** The watches of one (user, job), and its read loop. */
interface Entry {
  userId: string;
  jobId: string;
  /** Each listener, with the number of the first read that counts for it. */
  listeners: Map<JobListener, number>;
  /** Reads started so far (the number of the last one). */
  reads: number;
  reading: boolean;
  /** A change came during the read: read once more after it. */
  again: boolean;
}

/** The process's job change feed, fanned out to watches. */
export class JobEvents {
  /** job id -> user id -> entry */
  private readonly entries = new Map<string, Map<string, Entry>>();
  private readonly onEvent = (args: { jobId?: string }) => {
    const byUser = args?.jobId !== undefined ? this.entries.get(args.jobId) : undefined;
    if (byUser) for (const e of byUser.values()) this.read(e);
  };

  constructor(
    private readonly events: QueueEvents,
    private readonly queue: IngestQueue,
    private readonly log: Logger,
  ) {
    for (const name of JOB_EVENTS) events.on(name, this.onEvent as never);
  }

  /** Listens to `jobId` for `userId`; a read follows at once, and one after each change, until unsubscribe. */
  subscribe(userId: string, jobId: string, l: JobListener): void {
    let byUser = this.entries.get(jobId);
    if (!byUser) this.entries.set(jobId, (byUser = new Map()));
    let e = byUser.get(userId);
    if (!e) byUser.set(userId, (e = { userId, jobId, listeners: new Map(), reads: 0, reading: false, again: false }));
    e.listeners.set(l, e.reads + 1);
    this.read(e);
  }

  unsubscribe(userId: string, jobId: string, l: JobListener): void {
    const e = this.entries.get(jobId)?.get(userId);
    if (!e) return;
    e.listeners.delete(l);
    if (!e.reading) this.drop(e);
  }

  /** The watches subscribed now, over all sockets. */
  get size(): number {
    let n = 0;
    for (const byUser of this.entries.values()) for (const e of byUser.values()) n += e.listeners.size;
    return n;
  }

  close(): void {
    for (const name of JOB_EVENTS) this.events.off(name, this.onEvent as never);
    for (const byUser of this.entries.values()) for (const e of byUser.values()) e.listeners.clear();
    this.entries.clear();
  }

  private read(e: Entry): void {
    if (e.reading) {
      e.again = true;
      return;
    }
    e.reading = true;
    void (async () => {
      try {
        do {
          e.again = false;
          const n = ++e.reads;
          let status: IngestJobStatus | undefined;
          let failure: unknown;
          let failed = false;
          try {
            status = await this.queue.getJob(e.userId, e.jobId);
          } catch (err) {
            failure = err;
            failed = true;
          }
          for (const [l, from] of [...e.listeners]) {
            if (n < from || !e.listeners.has(l)) continue;
            try {
              if (failed) l.readFailed(failure);
              else l.status(status);
            } catch (err) {
              this.log.error("a job watch failed", { job: e.jobId, error: (err as Error)?.stack ?? String(err) });
            }
          }
        } while (e.again && e.listeners.size > 0);
      } finally {
        e.reading = false;
        this.drop(e);
      }
    })();
  }

  private drop(e: Entry): void {
    if (e.listeners.size > 0) return;
    const byUser = this.entries.get(e.jobId);
    if (byUser?.get(e.userId) !== e) return;
    byUser.delete(e.userId);
    if (!byUser.size) this.entries.delete(e.jobId);
  }
}

/** One socket's watches, by job id. */
export class JobWatches {
  private readonly watches = new Map<string, Watch>();

  constructor(
    /** Undefined when the job queue (Redis) is not available: every watch_job answers jobs_unavailable. */
    private readonly events: JobEvents | undefined,
    readonly outbox: Outbox,
    private readonly max: number,
    readonly log: Logger,
  ) {}

  /**
   * Starts watching for a watch_job frame. The watch is registered at once
   * (an unwatch_job right behind it finds it, and it counts toward the
   * limit), then `authorize` (the credential, checked again) decides before
   * anything is read. Watching a job this socket already watches starts
   * over: its status is sent again, and it is still one watch.
   */
  watch(f: WatchJobFrame, authorize: () => Promise<Principal | undefined>): void {
    const ids = { id: f.id, jobId: f.job_id };
    const events = this.events;
    if (!events)
      return this.outbox.send(errorFrame(new ApiError(503, "jobs_unavailable", "the job queue (Redis) is not available: see the server's log"), ids));
    this.watches.get(f.job_id)?.end();
    if (this.watches.size >= this.max) {
      const e: ErrorFrame = {
        type: "error",
        code: "too_many_watches",
        message: `this socket already watches ${this.max} jobs: unwatch one, or wait for one to end`,
        details: { limit: this.max },
        job_id: f.job_id,
      };
      return this.outbox.send(f.id === undefined ? e : { ...e, id: f.id });
    }
    const w = new Watch(this, events, f.job_id, f.id);
    this.watches.set(f.job_id, w);
    void (async () => {
      let p: Principal | undefined;
      try {
        p = await authorize();
      } catch (err) {
        this.log.error("watch_job failed", { error: (err as Error)?.stack ?? String(err) });
        w.fail(toApiError(err));
        return;
      }
      if (w.ended) return;
      if (!p) return w.end(); // the credential is gone: authorize answered, and the socket is closing
      // The job status endpoint's scope: a chat-only key reads no jobs here either.
      if (!hasScope(p, "memory")) return w.fail(ApiError.forbidden("this credential lacks the 'memory' scope"));
      w.start(p.userId);
    })();
  }

  /** Stops the watch of `jobId`, if there is one (nothing is answered either way). */
  unwatch(jobId: string): void {
    this.watches.get(jobId)?.end();
  }

  /** The socket closed. */
  close(): void {
    for (const w of [...this.watches.values()]) w.end();
  }

  /** @internal */
  forget(w: Watch): void {
    if (this.watches.get(w.jobId) === w) this.watches.delete(w.jobId);
  }
}

class Watch implements JobListener {
  ended = false;
  private userId: string | undefined;
  /** The last status sent, as JSON: a read that finds no change sends nothing. */
  private last: string | undefined;

  constructor(
    private readonly owner: JobWatches,
    private readonly events: JobEvents,
    readonly jobId: string,
    /** The watch_job frame's id, on every frame of this watch. */
    private readonly ref: FrameId | undefined,
  ) {}

  start(userId: string): void {
    this.userId = userId;
    this.events.subscribe(userId, this.jobId, this);
  }

  status(s: IngestJobStatus | undefined): void {
    if (this.ended) return;
    if (!s)
      // Never there, another user's (the same answer), or gone since (removed: its document was deleted).
      return this.fail(
        this.last === undefined
          ? ApiError.notFound("job", this.jobId)
          : new ApiError(404, "not_found", `job ${this.jobId} no longer exists`, { job: this.jobId }),
      );
    const frame = jobFrame(s, this.ref);
    const json = JSON.stringify(frame.job);
    if (json !== this.last) {
      this.last = json;
      this.owner.outbox.job(frame);
    }
    if (FINAL.has(s.state)) this.end();
  }

  readFailed(err: unknown): void {
    if (this.ended) return;
    this.fail(new ApiError(503, "jobs_unavailable", `the job queue (Redis) could not be read: ${(err as Error)?.message ?? String(err)}`));
  }

  /** Ends the watch with an error frame about it. */
  fail(e: ApiError): void {
    if (this.ended) return;
    this.owner.outbox.send(errorFrame(e, { id: this.ref, jobId: this.jobId }));
    this.end();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.userId !== undefined) this.events.unsubscribe(this.userId, this.jobId, this);
    this.owner.forget(this);
  }
}
