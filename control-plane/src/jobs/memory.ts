// The memory queue: the background work that keeps Jota's long-term memory,
// on its own BullMQ queue beside ingestion (so a large upload never holds up
// a summary):
// - extract: after a completed turn, the conversation's new messages are
//   read for durable facts (memory/extraction.ts). Delayed a little
//   (JOTA_MEMORY_DELAY_MS) so that a burst of turns is read in one job: the
//   first job reads everything up to then, the later ones find nothing new
//   and end at once. Id: extract-<conversation>-<request>.
// - summarize: a turn whose history no longer fit asks for a summary
//   (memory/summaries.ts). Id: summarize-<conversation>-<through message>,
//   so the turns that follow, trimming the same, make no second job.
// - upkeep: nightly (memory/upkeep.ts), a repeatable job at JOTA_UPKEEP_AT.
//
// Every job has three attempts with exponential backoff; bad input or output
// that retrying cannot change fails at once (UnrecoverableError). Finished
// jobs stay readable for a day; one that failed is added again when asked
// again (submit.ts), so a summary or an extraction that failed while the
// engine was down is done by the next turn that asks, not a day later.
import { Queue, UnrecoverableError, WaitingError, Worker, type Job } from "bullmq";
import { addOnce } from "./submit";
import { closer, logWorkerEvents } from "./worker-events";
import type { Redis } from "ioredis";
import type { DirectSql } from "../db/direct-sql";
import type { Repositories } from "../db/repositories";
import type { EnginePool } from "../engines/pool";
import { silentLogger, type Logger } from "../log";
import { extractMemories, type ExtractionJob, type ExtractionResult } from "../memory/extraction";
import { PromptDoesNotFitError } from "../memory/llm";
import type { Memories } from "../memory/memories";
import { summarizeConversation, type SummaryJob, type SummaryResult } from "../memory/summaries";
import { runUpkeep, type UpkeepOptions, type UpkeepResult } from "../memory/upkeep";

export const MEMORY_QUEUE = "jota-memory";
/** The id of the upkeep schedule (BullMQ types it as a job name). */
const UPKEEP_SCHEDULER: MemoryJobName = "upkeep";

export type MemoryJobData = ExtractionJob | SummaryJob | UpkeepOptions;
export type MemoryJobResult = ExtractionResult | SummaryResult | UpkeepResult;
export type MemoryJobName = "extract" | "summarize" | "upkeep";
type MemoryJob = Job<MemoryJobData, MemoryJobResult, MemoryJobName>;

export interface MemoryQueueOptions {
  connection: Redis;
  /** Default "jota-memory" (tests may use their own). */
  name?: string;
  /** How long an extraction waits for more turns. Default 5000. */
  extractDelayMs?: number;
  /** First retry delay; each next one doubles. Default 2000. */
  backoffMs?: number;
  logger?: Logger;
}

/** "HH:MM" (24 h, the server's time zone) -> the cron pattern of that time every day. */
export function dailyPattern(at: string): string {
  const m = /^([01]?\d|2[0-3]):([0-5]\d)$/.exec(at.trim());
  if (!m) throw new RangeError(`'${at}' is not a time of day (HH:MM, 24-hour)`);
  return `${Number(m[2])} ${Number(m[1])} * * *`;
}

export class MemoryQueue {
  readonly queue: Queue<MemoryJobData, MemoryJobResult, MemoryJobName>;
  private readonly extractDelayMs: number;

  constructor(opts: MemoryQueueOptions) {
    this.extractDelayMs = opts.extractDelayMs ?? 5000;
    const keep = { age: 24 * 3600 };
    this.queue = new Queue(opts.name ?? MEMORY_QUEUE, {
      connection: opts.connection,
      defaultJobOptions: {
        attempts: 3,
        backoff: { type: "exponential", delay: opts.backoffMs ?? 2000 },
        removeOnComplete: keep,
        removeOnFail: keep,
      },
    });
    const logger = opts.logger ?? silentLogger;
    this.queue.on("error", (err) => logger.debug("memory queue error", { error: err.message }));
  }

  /** Reads the conversation's new messages for memories, after the delay. */
  async extract(job: ExtractionJob & { requestId: string }): Promise<string> {
    const id = `extract-${job.conversationId}-${job.requestId}`;
    await addOnce(this.queue, "extract", { userId: job.userId, conversationId: job.conversationId }, { jobId: id, delay: this.extractDelayMs });
    return id;
  }

  /** Summarizes the conversation through message `throughId` (once per message). */
  async summarize(job: SummaryJob): Promise<string> {
    const id = `summarize-${job.conversationId}-${job.throughId}`;
    await addOnce(this.queue, "summarize", job, { jobId: id });
    return id;
  }

  /** Runs upkeep every day at `at` ("HH:MM", server time); replaces an earlier schedule. */
  async scheduleUpkeep(at: string, opts: UpkeepOptions): Promise<void> {
    await this.queue.upsertJobScheduler(UPKEEP_SCHEDULER, { pattern: dailyPattern(at) }, { name: "upkeep", data: opts, opts: { attempts: 2 } });
  }

  /** Runs upkeep now (the CLI's `upkeep`); resolves with the job id. */
  async upkeepNow(opts: UpkeepOptions): Promise<string> {
    const job = await this.queue.add("upkeep", opts, { attempts: 2 });
    return job.id!;
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}

export interface MemoryWorkerOptions {
  connection: Redis;
  repos: Repositories;
  memories: Memories;
  pool: EnginePool;
  logger: Logger;
  /** The database through its driver: upkeep vacuums the embedded one with it (db/maintenance.ts). */
  sql?: DirectSql;
  /** Default "jota-memory". */
  queueName?: string;
  /** Jobs at once. Default 1: each is a generation on the chat engine users are waiting on. */
  concurrency?: number;
}

export interface MemoryWorker {
  readonly worker: Worker<MemoryJobData, MemoryJobResult, MemoryJobName>;
  close(): Promise<void>;
}

export function startMemoryWorker(opts: MemoryWorkerOptions): MemoryWorker {
  const logger = opts.logger.child({ component: "memory-worker" });
  const deps = { repos: opts.repos, memories: opts.memories, pool: opts.pool, logger, sql: opts.sql };
  let closing = false;
  const processor = async (job: MemoryJob, token: string | undefined, signal: AbortSignal | undefined): Promise<MemoryJobResult> => {
    try {
      switch (job.name) {
        case "extract":
          return await extractMemories(deps, job.data as ExtractionJob, signal);
        case "summarize":
          return await summarizeConversation(deps, job.data as SummaryJob, signal);
        case "upkeep": {
          const r = await runUpkeep(deps, job.data as UpkeepOptions, signal);
          // Every step ran; one that failed is tried again with the whole job (each step is idempotent).
          if (r.errors.length > 0) throw new Error(`upkeep: ${r.errors.join("; ")}`);
          return r;
        }
        default:
          throw new UnrecoverableError(`unknown memory job "${String(job.name)}"`);
      }
    } catch (err) {
      if (closing && signal?.aborted) {
        // Back to the queue, this attempt not counted (as ingestion does: worker.ts).
        await job.moveToWait(token).catch((e: Error) => logger.warn("cannot put the aborted job back; it will be found stalled", { job: job.id, error: e.message }));
        throw new WaitingError();
      }
      // A prompt that cannot fit is the same prompt on the next attempt.
      if (err instanceof PromptDoesNotFitError) throw new UnrecoverableError(err.message);
      throw err;
    }
  };
  const worker = new Worker<MemoryJobData, MemoryJobResult, MemoryJobName>(opts.queueName ?? MEMORY_QUEUE, processor, {
    connection: opts.connection,
    concurrency: opts.concurrency ?? 1,
  });
  logWorkerEvents(worker, logger, "memory job", (job) => ({ job: job.id, name: job.name }));
  worker.on("completed", (job, res) => logger.info("memory job done", { job: job.id, name: job.name, ...res }));
  return { worker, close: closer(worker, () => (closing = true)) };
}
