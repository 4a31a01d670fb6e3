// Adding a job under an id derived from its work (ingest:<user>:<hash>,
// summarize-<conversation>-<message>, ...). BullMQ ignores an add whose id
// exists, which is the point while that job is still to run or running: the
// same work asked twice is done once. A finished job is another matter: it
// keeps its id for a day (removeOnFail / removeOnComplete), and neither
// ignoring the add nor retrying the job (Job#retry runs the payload the job
// was added with) would run the payload given now. So a failed job, and a
// completed one when the caller says its payload no longer stands, is removed
// first and the job added again, from its first attempt.
import { isDeepStrictEqual } from "node:util";
import type { JobsOptions } from "bullmq";

/** What addOnce needs of a BullMQ Queue. */
export interface JobQueue<D, N extends string> {
  getJob(id: string): Promise<{ data: D; getState(): Promise<string> } | undefined>;
  remove(id: string): Promise<number>;
  add(name: N, data: D, opts?: JobsOptions): Promise<unknown>;
}

export interface AddOnceOptions<D> {
  /**
   * Whether a completed job of this id is to run again, given the payload it
   * ran with (as stored: JSON). Default: never (its work is done).
   */
  rerunCompleted?: (ran: D) => boolean;
}

/** The same payload as a job stores it (JSON: undefined fields dropped, key order not counted). */
export function samePayload(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(JSON.parse(JSON.stringify(a ?? null)), JSON.parse(JSON.stringify(b ?? null)));
}

/** Adds the job `opts.jobId`, or leaves the one of that id waiting or running; see the file's comment. */
export async function addOnce<D, N extends string>(
  queue: JobQueue<D, N>,
  name: N,
  data: D,
  opts: JobsOptions & { jobId: string },
  o: AddOnceOptions<D> = {},
): Promise<void> {
  const old = await queue.getJob(opts.jobId);
  if (old) {
    const state = await old.getState();
    // 0 when it is locked: another submit replaced it just now and a worker took that one, which stands.
    if (state === "failed" || (state === "completed" && o.rerunCompleted?.(old.data))) await queue.remove(opts.jobId);
  }
  await queue.add(name, data, opts);
}
