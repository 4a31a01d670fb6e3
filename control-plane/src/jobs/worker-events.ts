// What every Jota job worker says and how it stops, in one place (the ingest
// worker in worker.ts, the memory worker in memory.ts).
import { UnrecoverableError, type Job, type Worker } from "bullmq";
import type { Logger } from "../log";

/**
 * Logs a worker's queue errors (while Redis is away every reconnection
 * attempt is one: each different message at most once a minute at warn,
 * the rest at debug) and its failed attempts (error when final: unrecoverable
 * or the last attempt; warn when it will be retried). `fields` names the job
 * in the log; `what` is "ingest job", "memory job".
 */
export function logWorkerEvents<D, R, N extends string>(worker: Worker<D, R, N>, logger: Logger, what: string, fields: (job: Job<D, R, N>) => Record<string, unknown>): void {
  const said = new Map<string, number>();
  worker.on("error", (err) => {
    const now = Date.now();
    const quiet = now - (said.get(err.message) ?? -Infinity) < 60_000;
    if (!quiet) said.set(err.message, now);
    (quiet ? logger.debug : logger.warn)("queue error", { error: err.message });
  });
  worker.on("failed", (job, err) => {
    if (!job) return;
    const final = err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
    (final ? logger.error : logger.warn)(final ? `${what} failed` : `${what} attempt failed; retrying`, {
      ...fields(job),
      attemptsMade: job.attemptsMade,
      error: err.message,
    });
  });
}

/**
 * A worker's close: running jobs are told to abort (`onClosing` first lets
 * their processors tell that from other aborts), then the worker closes.
 * Idempotent.
 */
export function closer<D, R, N extends string>(worker: Worker<D, R, N>, onClosing: () => void): () => Promise<void> {
  let closed: Promise<void> | undefined;
  return () =>
    (closed ??= (async () => {
      onClosing();
      worker.cancelAllJobs("worker closing");
      await worker.close();
    })());
}
