// Keeps each document's row (db/repositories/documents.ts) in step with its
// ingest job: READY with its chunk count and collection when the job
// completes, FAILED with the reason when its last attempt fails. It is the
// worker's onSettled hook (worker.ts), so the row is written inside the job's
// attempt, before BullMQ records the outcome: a crash in between makes the
// job run again, never a job done with its row left QUEUED. Wherever an
// ingest worker runs (in `npm start`, or a worker process), this runs with it.
//
// An upload's chunks carry its job id (memory/ingest.ts), and the row names
// the job whose chunks are current (chunksJobId, set by ready): retrieval
// keeps only those (memory/retrieve.ts). So two jobs of one source, in two
// processes that no lock orders, never touch each other's chunks, and the
// cleanup is per version:
// - the job the row names, once READY, deletes the version the row named
//   before it (only that one: a newer upload's job may have written its own
//   chunks by now, and they must stay);
// - any other job (an older upload's, ending late, whatever it wrote; or one
//   whose document was deleted meanwhile) deletes its own chunks again, so
//   that neither a replaced nor a deleted version outlives its job. Before
//   that, a row that names no collection yet (a first upload's) is made to
//   name this one, so that should the delete fail, deleting the document
//   still finds them.
import type { DocumentRepository } from "../db/repositories/documents";
import { deleteChunkVersion, type VectorStore } from "../memory/vector/store";
import { startIngestWorker, type IngestOutcome, type IngestWorker, type IngestWorkerOptions } from "./worker";

export function documentTracker(documents: DocumentRepository, store: VectorStore): (o: IngestOutcome) => Promise<void> {
  return async (o) => {
    if (!o.documentId) return; // not an upload (no row to keep): e.g. ingestion submitted by Jota itself
    if (o.state === "failed") {
      await documents.failed(o.userId, o.source, o.jobId, o.reason);
      return;
    }
    const { userId, source, jobId } = o;
    const { collection } = o.result;
    // Read before ready: while the row names this job only this job's ready (a second run of it) can change
    // what it names as current.
    const before = await documents.bySource(userId, source);
    if (await documents.ready(userId, source, jobId, o.result.chunks, collection, o.result.title)) {
      const previous = before?.chunksJobId ?? undefined; // undefined: chunks written before versions, if any
      if (previous === jobId) return; // this job again (a retried attempt): nothing older to delete
      await deleteChunkVersion(store, userId, collection, source, previous);
      // The previous version may be in another model's collection, which the row no longer names.
      if (before?.collection && before.collection !== collection) await deleteChunkVersion(store, userId, before.collection, source, previous);
      return;
    }
    const row = await documents.bySource(userId, source);
    if (row?.chunksJobId === jobId) return; // the same content uploaded again and READY under this job id: these are its chunks
    if (row) await documents.chunksIn(userId, source, collection);
    await deleteChunkVersion(store, userId, collection, source, jobId);
  };
}

/**
 * For the worker's stillWanted: an upload's job is wanted while its source's
 * row still names it (a newer upload names its own job). Ingestion not from
 * an upload is always wanted.
 */
export function documentStillWanted(documents: DocumentRepository): (job: { jobId: string; userId: string; source: string; documentId?: string }) => Promise<boolean> {
  return async (j) => !j.documentId || (await documents.bySource(j.userId, j.source))?.jobId === j.jobId;
}

/**
 * The ingest worker every Jota process runs (npm start, the worker process):
 * its jobs keep the users' document rows in step (documentTracker) and stop
 * before writing when their upload was replaced or deleted (documentStillWanted).
 */
export function startDocumentWorker(documents: DocumentRepository, opts: Omit<IngestWorkerOptions, "onSettled" | "stillWanted">): IngestWorker {
  return startIngestWorker({ ...opts, onSettled: documentTracker(documents, opts.store), stillWanted: documentStillWanted(documents) });
}
