// The ingest queue: one BullMQ job per document to chunk, embed and store
// (memory/ingest.ts does the work; worker.ts runs it).
//
// - A job's id is derived from the document: ingest:<userId>:<hash of source
//   and text>. BullMQ ignores an add whose id exists, so submitting the same
//   document again (a client retrying a request, a double click) returns the
//   job already there and ingests nothing twice. Only source and text count:
//   the same text submitted with other tags or a new title, while its job is
//   still waiting or running, is that job.
// - A finished job submitted again runs again with what was submitted now
//   (submit.ts): a failed one always (its attempts start over), a completed
//   one when anything in the submission differs (other tags, a new title, a
//   media type); the very same submission of a completed job is that job.
// - Three attempts with exponential backoff: an engine or store failure is
//   retried; bad input (IngestError) fails at once (the worker's doing).
// - Finished jobs are kept for a day, so a client can still read how its job
//   ended; after that their status is gone (the memories stay, of course).
// - A job belongs to the user in its data: getJob for another user's job
//   answers as for a job that does not exist.
//
// Job payloads hold the whole document text, in Redis, until the job is
// removed. A document's size is bounded where it enters: the gateway refuses
// request bodies over JOTA_MAX_BODY_BYTES (1 MiB by default).
import { createHash } from "node:crypto";
import { Queue, type Job, type JobState } from "bullmq";
import type { Redis } from "ioredis";
import { silentLogger, type Logger } from "../log";
import type { IngestDocument, IngestProgress, IngestResult } from "../memory/ingest";
import { addOnce, samePayload } from "./submit";

export const INGEST_QUEUE = "jota-ingest";

export type IngestJob = Job<IngestDocument, IngestResult, "ingest">;

/** The states a client sees (BullMQ's prioritized and waiting-children count as waiting). */
export type IngestJobState = "waiting" | "active" | "completed" | "failed" | "delayed";

export interface IngestJobStatus {
  id: string;
  state: IngestJobState;
  source: string;
  /** The last progress report (memory/ingest.ts), once the job has started. */
  progress: IngestProgress | undefined;
  /** Attempts that have ended (failed, or the one that completed). */
  attemptsMade: number;
  result: IngestResult | undefined;
  /** Why the last attempt failed. */
  failedReason: string | undefined;
  createdAt: Date;
  finishedAt: Date | undefined;
}

export interface SubmitResult {
  jobId: string;
  state: IngestJobState;
}

export interface IngestQueueOptions {
  connection: Redis;
  /** Default "jota-ingest" (tests may use their own). */
  name?: string;
  /** Tries per job. Default 3. */
  attempts?: number;
  /** First retry delay; each next one doubles. Default 1000. */
  backoffMs?: number;
  /** How long finished jobs stay readable. Default one day. */
  keepSeconds?: number;
  logger?: Logger;
}

/** ingest:<userId>:<first 32 hex digits of sha256(source "\0" text)> */
export function ingestJobId(doc: Pick<IngestDocument, "userId" | "source" | "text">): string {
  const part = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v ?? null));
  const hash = createHash("sha256").update(`${part(doc.source)}\0${part(doc.text)}`).digest("hex").slice(0, 32);
  // BullMQ refuses custom ids with a ':' other than exactly two: keep the user's own out.
  return `ingest:${encodeURIComponent(doc.userId)}:${hash}`;
}

function clientState(s: JobState | "unknown"): IngestJobState | undefined {
  switch (s) {
    case "waiting":
    case "prioritized":
    case "waiting-children":
      return "waiting";
    case "active":
    case "completed":
    case "failed":
    case "delayed":
      return s;
    default:
      return undefined; // removed (or never there)
  }
}

function isProgress(p: unknown): p is IngestProgress {
  return !!p && typeof p === "object" && "phase" in p && "done" in p && "total" in p;
}

export class IngestQueue {
  readonly queue: Queue<IngestDocument, IngestResult, "ingest">;

  constructor(opts: IngestQueueOptions) {
    const keep = { age: opts.keepSeconds ?? 24 * 3600 };
    this.queue = new Queue(opts.name ?? INGEST_QUEUE, {
      connection: opts.connection,
      defaultJobOptions: {
        attempts: opts.attempts ?? 3,
        backoff: { type: "exponential", delay: opts.backoffMs ?? 1000 },
        removeOnComplete: keep,
        removeOnFail: keep,
      },
    });
    // Connection trouble: the connection's owner (redis.ts) reports outages; these are their echoes.
    const logger = opts.logger ?? silentLogger;
    this.queue.on("error", (err) => logger.debug("ingest queue error", { error: err.message }));
  }

  get name(): string {
    return this.queue.name;
  }

  /**
   * Queues a document for ingestion, once: the same (user, source, text)
   * returns the existing job while it is to run or running, and a finished
   * one runs again with this submission (see the file's comment). Only the user id is checked here (the job id
   * needs it); the rest is the ingester's to judge, and bad input makes a job
   * that fails at once with the reason.
   */
  async submitIngest(doc: IngestDocument): Promise<SubmitResult> {
    if (!doc || typeof doc.userId !== "string" || doc.userId === "") throw new TypeError("submitIngest: document.userId must be a non-empty string");
    const jobId = ingestJobId(doc);
    // BullMQ ignores an add whose id exists, so two submits racing here still make one job.
    await addOnce(this.queue, "ingest", doc, { jobId }, { rerunCompleted: (ran) => !samePayload(ran, doc) });
    return { jobId, state: clientState(await this.queue.getJobState(jobId)) ?? "waiting" };
  }

  /** The job's status, if it exists and belongs to `userId`; undefined otherwise (the same for both). */
  async getJob(userId: string, jobId: string): Promise<IngestJobStatus | undefined> {
    if (typeof jobId !== "string" || !jobId.startsWith(`ingest:${encodeURIComponent(userId)}:`)) return undefined;
    // The job's fields and its state are two reads: a job that moves between
    // them (active -> failed) would show one state with the other's fields.
    // Read until the state is the same before and after the fields.
    let job: IngestJob | undefined;
    let state: IngestJobState | undefined;
    for (let tries = 0; ; tries++) {
      const before = await this.queue.getJobState(jobId);
      job = await this.queue.getJob(jobId);
      const after = await this.queue.getJobState(jobId);
      state = clientState(after);
      if (before === after || tries === 10) break;
    }
    if (!job || !state || job.data?.userId !== userId) return undefined;
    return {
      id: jobId,
      state,
      source: job.data.source,
      progress: isProgress(job.progress) ? job.progress : undefined,
      attemptsMade: job.attemptsMade,
      result: state === "completed" ? job.returnvalue : undefined,
      failedReason: job.failedReason || undefined,
      createdAt: new Date(job.timestamp),
      finishedAt: job.finishedOn ? new Date(job.finishedOn) : undefined,
    };
  }

  /** Closes the queue (not the connection, which is the caller's). */
  async close(): Promise<void> {
    await this.queue.close();
  }
}
