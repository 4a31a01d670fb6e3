// Runs ingest jobs (queues.ts): each job is one ingestDocument call on an
// inference engine that has an embedding model, chosen from the pool, into
// the vector store.
//
// - Progress: every phase change and every phase's last report
//   (done == total) goes to job.updateProgress, in order; reports in between
//   at most every progressIntervalMs (a large document makes thousands).
// - Failures: bad input (IngestError, or a point the store refuses) fails the
//   job at once (UnrecoverableError: retrying cannot help); anything else (no
//   engine, an engine or database error) is retried with the queue's backoff,
//   and after the last attempt the job is failed with that error's message.
// - close(): running ingestions are aborted (their abort signal), put back
//   in the queue without using up an attempt, and close() resolves once they
//   have let go; the next worker starts them over. Ingestion writes nothing
//   before its last step, so an aborted one leaves the store as it was.
import { UnrecoverableError, WaitingError, Worker } from "bullmq";
import { closer, logWorkerEvents } from "./worker-events";
import type { Redis } from "ioredis";
import type { InferenceEngineClient } from "../engines/clients";
import type { EngineLease, EnginePool } from "../engines/pool";
import { pickEmbeddingEngine } from "../memory/embedder";
import type { Logger } from "../log";
import { IngestError, ingestDocument, type IngestOptions, type IngestProgress, type IngestResult } from "../memory/ingest";
import { InvalidVectorInputError, type VectorStore } from "../memory/vector/store";
import { INGEST_QUEUE, type IngestJob } from "./queues";

export interface IngestWorkerOptions {
  connection: Redis;
  pool: EnginePool;
  store: VectorStore;
  logger: Logger;
  /** Jobs run at once (JOTA_JOB_CONCURRENCY). Default 1. */
  concurrency?: number;
  /** Default "jota-ingest", as IngestQueue's. */
  queueName?: string;
  /** Chunking and batching, passed to ingestDocument. */
  ingest?: Pick<IngestOptions, "chunkTokens" | "overlapTokens" | "embedBatch" | "tokenizeConcurrency">;
  /** Least time between two progress updates of one phase. Default 250. */
  progressIntervalMs?: number;
  /**
   * Called when a job's outcome is final, before BullMQ records it (e.g. to
   * settle the user's document row): completed with its result, or failed
   * for good (bad input, or its last attempt) with the reason the job will
   * show. If it throws on "completed", the attempt fails and is retried; its
   * errors on "failed" are logged.
   */
  onSettled?: (outcome: IngestOutcome) => Promise<void> | void;
  /**
   * Asked before a job replaces the source's stored chunks: false when a
   * newer upload of the source took its place (documents.ts's
   * documentStillWanted); the job then fails without writing anything.
   */
  stillWanted?: (job: { jobId: string; userId: string; source: string; documentId?: string }) => Promise<boolean>;
}

export type IngestOutcome =
  | { jobId: string; userId: string; source: string; documentId?: string; state: "completed"; result: IngestResult }
  | { jobId: string; userId: string; source: string; documentId?: string; state: "failed"; reason: string };

export interface IngestWorker {
  readonly worker: Worker<IngestJob["data"], IngestResult, "ingest">;
  /** Aborts running jobs (they go back to the queue), waits for them, closes the worker's connections. */
  close(): Promise<void>;
}

const ids = (job: IngestJob) => ({
  jobId: job.id!,
  userId: job.data.userId,
  source: job.data.source,
  ...(job.data.documentId !== undefined ? { documentId: job.data.documentId } : {}),
});

/** The version an upload's chunks carry: its job's id and creation time (see startIngestWorker). */
export function uploadVersion(jobId: string, createdAt: number): string {
  return `${jobId}.${createdAt}`;
}

export function startIngestWorker(opts: IngestWorkerOptions): IngestWorker {
  const logger = opts.logger.child({ component: "ingest-worker" });
  const interval = opts.progressIntervalMs ?? 250;
  let closing = false;

  // Three parameters: BullMQ passes an abort signal only to a processor that declares it.
  const processor = async (job: IngestJob, token: string | undefined, signal: AbortSignal | undefined): Promise<IngestResult> => {
    const log = logger.child({ job: job.id, user: job.data.userId, source: job.data.source, attempt: job.attemptsMade + 1 });
    let pending: Promise<unknown> = Promise.resolve();
    let lastPhase: IngestProgress["phase"] | undefined;
    let lastAt = 0;
    const onProgress = (p: IngestProgress) => {
      const now = Date.now();
      if (p.phase === lastPhase && p.done < p.total && now - lastAt < interval) return;
      lastPhase = p.phase;
      lastAt = now;
      const report = { ...p };
      pending = pending.then(() => job.updateProgress(report)).catch((err: Error) => log.warn("cannot record progress", { error: err.message }));
    };

    let lease: EngineLease<InferenceEngineClient> | undefined;
    let failure: unknown;
    try {
      lease = await pickEmbeddingEngine(opts.pool);
      log.debug("ingesting", { engine: lease.address });
      const result = await ingestDocument(job.data, {
        ...opts.ingest,
        engine: lease.client,
        store: opts.store,
        onProgress,
        signal,
        ...(opts.stillWanted ? { stillWanted: () => opts.stillWanted!(ids(job)) } : {}),
        // An upload's chunks carry its version, and its row names the version whose chunks are current
        // (jobs/documents.ts). The job id alone is not one per upload: it is made from the content
        // (queues.ts), so uploading A, B, then A again would give the third upload the first one's
        // chunks, which the second one's cleanup may be deleting. A job added again has a new
        // timestamp; its retries and stalled re-runs keep it.
        ...(job.data.documentId !== undefined ? { version: uploadVersion(job.id!, job.timestamp) } : {}),
      });
      await opts.onSettled?.({ ...ids(job), state: "completed", result });
      return result;
    } catch (err) {
      failure = err;
      await pending;
      if (closing && signal?.aborted) {
        // Back to the queue, this attempt not counted: the next worker starts it over.
        await job.moveToWait(token).catch((e: Error) => log.warn("cannot put the aborted job back; it will be found stalled", { error: e.message }));
        log.info("ingestion aborted by shutdown; job queued again");
        throw new WaitingError();
      }
      const unrecoverable = err instanceof IngestError || err instanceof InvalidVectorInputError;
      const reason = err instanceof Error ? err.message : String(err);
      if (opts.onSettled && (unrecoverable || job.attemptsMade + 1 >= (job.opts.attempts ?? 1)))
        await Promise.resolve()
          .then(() => opts.onSettled!({ ...ids(job), state: "failed", reason }))
          .catch((e: Error) => log.error("onSettled failed for a failed job", { error: e.message }));
      throw unrecoverable ? new UnrecoverableError(reason) : err;
    } finally {
      await pending;
      lease?.release(failure);
    }
  };

  const worker = new Worker<IngestJob["data"], IngestResult, "ingest">(opts.queueName ?? INGEST_QUEUE, processor, {
    connection: opts.connection,
    concurrency: opts.concurrency ?? 1,
  });
  logWorkerEvents(worker, logger, "ingest job", (job) => ({ job: job.id, user: job.data.userId, source: job.data.source }));
  worker.on("completed", (job, res) =>
    logger.info("ingest job done", { job: job.id, user: job.data.userId, source: job.data.source, chunks: res.chunks, replaced: res.replaced }),
  );

  return { worker, close: closer(worker, () => (closing = true)) };
}
