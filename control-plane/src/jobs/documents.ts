// Keeps each document's row (db/repositories/documents.ts) in step with its
// ingest job: READY with its chunk count and collection when the job
// completes, FAILED with the reason when its last attempt fails. It is the
// worker's onSettled hook (worker.ts), so the row is written inside the job's
// attempt, before BullMQ records the outcome: a crash in between makes the
// job run again, never a job done with its row left QUEUED. Wherever an
// ingest worker runs (in `npm start`, or a worker process), this runs with it.
//
// A job that completes for a document the user deleted meanwhile finds no
// row of its own: the chunks it just wrote are deleted again, so that a
// deleted document never comes back through a late job. When the row names
// a newer upload of the source instead, that upload's job replaces the
// chunks itself (its writes come after these: ingest.ts), and until then the
// row must name where these chunks are: a first upload's row names no
// collection yet, and deleting the document before the newer job ran would
// otherwise leave them behind, found by retrieval with nothing to delete
// them.
import type { DocumentRepository } from "../db/repositories/documents";
import { deleteSourceIfAny, type VectorStore } from "../memory/vector/store";
import { startIngestWorker, type IngestOutcome, type IngestWorker, type IngestWorkerOptions } from "./worker";

export function documentTracker(documents: DocumentRepository, store: VectorStore): (o: IngestOutcome) => Promise<void> {
  return async (o) => {
    if (!o.documentId) return; // not an upload (no row to keep): e.g. ingestion submitted by Jota itself
    if (o.state === "failed") {
      await documents.failed(o.userId, o.source, o.jobId, o.reason);
      return;
    }
    if (await documents.ready(o.userId, o.source, o.jobId, o.result.chunks, o.result.collection, o.result.title)) return;
    if (await documents.chunksIn(o.userId, o.source, o.result.collection)) return; // a newer upload, named no collection yet
    if (await documents.bySource(o.userId, o.source)) return; // a newer upload of the source: its own job replaces these chunks
    await deleteSourceIfAny(store, o.userId, o.result.collection, o.source);
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
