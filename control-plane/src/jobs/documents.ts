// Keeps each document's row (db/repositories/documents.ts) in step with its
// ingest job: READY with its chunk count and collection when the job
// completes, FAILED with the reason when its last attempt fails. It is the
// worker's onSettled hook (worker.ts), so the row is written inside the job's
// attempt, before BullMQ records the outcome: a crash in between makes the
// job run again, never a job done with its row left QUEUED. Wherever an
// ingest worker runs (in `npm start`, or a worker process), this runs with it.
//
// An upload's chunks carry its version (its job's id and creation time:
// jobs/worker.ts) in their ids (memory/ingest.ts), and the row names the
// version whose chunks are current (chunksVersion, set by ready): retrieval
// keeps only those (memory/retrieve.ts). So two jobs of one source, in two
// processes that no lock orders, never touch each other's chunks, and the
// cleanup is per version:
// - the job the row names, once READY, deletes every other version of the
//   source, in the row's collection and the one it named before, except the
//   newest upload's (the row's jobId, when a newer upload has taken it: its
//   job may be writing its chunks by now). Not only the version it replaced:
//   a cleanup that failed, or a crash just after ready, leaves versions
//   behind that no row names, and the next READY of the source takes them
//   too. A failure here never fails the job: its chunks are current and
//   stored, and what is left is never retrieved;
// - any other job (an older upload's, ending late, whatever it wrote; or one
//   whose document was deleted meanwhile) deletes its own version again, so
//   that neither a replaced nor a deleted version outlives its job. Before
//   that, a row that names no collection yet (a first upload's) is made to
//   name this one, so that should the delete fail, deleting the document
//   still finds them.
import type { DocumentRepository } from "../db/repositories/documents";
import { silentLogger, type Logger } from "../log";
import { deleteChunksWhere, deleteChunkVersion, type VectorStore } from "../memory/vector/store";
import { startIngestWorker, type IngestOutcome, type IngestWorker, type IngestWorkerOptions } from "./worker";

export function documentTracker(documents: DocumentRepository, store: VectorStore, log: Logger = silentLogger): (o: IngestOutcome) => Promise<void> {
  return async (o) => {
    if (!o.documentId) return; // not an upload (no row to keep): e.g. ingestion submitted by Jota itself
    if (o.state === "failed") {
      await documents.failed(o.userId, o.source, o.jobId, o.reason);
      return;
    }
    const { userId, source, jobId } = o;
    const { collection } = o.result;
    const version = o.result.version ?? jobId;
    // Read before ready, for the collection the replaced version is in (another model's, maybe).
    const before = await documents.bySource(userId, source);
    if (await documents.ready(userId, source, jobId, o.result.chunks, collection, version, o.result.title)) {
      await dropReplaced(documents, store, { userId, source, jobId, version }, [collection, before?.collection]).catch((err: unknown) =>
        log.warn("could not delete the replaced versions of a document (the next upload of it does)", {
          source,
          error: (err as Error)?.message ?? String(err),
        }),
      );
      return;
    }
    const row = await documents.bySource(userId, source);
    if (row?.chunksVersion === version) return; // READY under this very version meanwhile (a second run of this job)
    if (row) await documents.chunksIn(userId, source, collection);
    await deleteChunkVersion(store, userId, collection, source, version);
  };
}

/** After `current` became READY: the source's other versions, in `collections`, but the newest upload's (see the file's comment). */
async function dropReplaced(
  documents: DocumentRepository,
  store: VectorStore,
  current: { userId: string; source: string; jobId: string; version: string },
  collections: (string | null | undefined)[],
): Promise<void> {
  const { userId, source, jobId, version } = current;
  const row = await documents.bySource(userId, source);
  if (row?.chunksVersion !== version) return; // replaced or deleted meanwhile: the newer job, or the delete, cleans up
  // A newer upload's job, named by the row from its upload on: its version is its id and a creation time not known here.
  const newest = row.jobId && row.jobId !== jobId ? `${row.jobId}.` : undefined;
  const drop = (v: string | undefined) => v !== version && !(newest && v?.startsWith(newest));
  for (const c of new Set(collections.filter((c): c is string => !!c))) await deleteChunksWhere(store, userId, c, source, drop);
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
  return startIngestWorker({ ...opts, onSettled: documentTracker(documents, opts.store, opts.logger.child({ component: "documents" })), stillWanted: documentStillWanted(documents) });
}
