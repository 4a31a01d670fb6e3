// Upkeep's re-embedding of documents (upkeep.ts, step "re-embed-documents"):
// after the engines' embedding model changes, retrieval queries the new
// model's collection, where a document's chunks are not until they are
// embedded again. The documents' text is not kept in the database; each
// chunk's text is in its point's payload, so the chunks are read back from
// the old collection, embedded by the current model and written to its
// collection under the same ids and payloads. The ids carry the upload's
// version (its ingest job: ingest.ts), which the row names and retrieval
// checks, so the moved chunks stay the current ones. Only the version the
// row names is moved: the points of any other (an older upload's late job
// not yet cleaned up) are never retrieved, and go with the old collection's.
//
// Per document, in this order, so that a crash anywhere leaves it at least as
// retrievable as before and the next run finishes it:
// 1. the chunks into the current collection (upserts by id: a second run
//    writes the same points again);
// 2. the chunks out of the old collection: from here the current
//    collection holds the only copy, which is what retrieval queries;
// 3. the row names the current collection. A crash just before this leaves
//    a row naming the old collection, which holds none of its chunks: the
//    next run finds them in the current one and only names it.
// Each document's work takes its turn with ingestions of the same source in
// this process (ingest.ts), so a re-upload's job never has its chunks
// overwritten by the older version's; like ingestion's turns, they are per
// process. A delete through the API is not in those turns: a row gone by
// the end has the chunks just written deleted again. (A delete that read
// the row before step 3 and removes it after the check still leaves them
// in the current collection.)
import type { Document } from "@prisma/client";
import type { DocumentRepository } from "../db/repositories/documents";
import { embedBatched, inSourceTurn } from "./ingest";
import type { Embed } from "./memories";
import { UnknownCollectionError, allBySource, chunkPointId, deleteChunkVersion, type StoredPoint, type VectorStore } from "./vector/store";

export interface ReembedDocumentsDeps {
  documents: DocumentRepository;
  store: VectorStore;
  embed: Embed;
}

/** Re-embeds the documents (READY, or FAILED with an earlier upload's chunks) whose chunks are in another model's collection; returns how many were moved. */
export async function reembedDocuments(deps: ReembedDocumentsDeps, opts: { batch?: number; signal?: AbortSignal } = {}): Promise<number> {
  const batch = opts.batch ?? 32;
  // The current model's collection, from a probe (as memories' reembed finds it).
  const current = await deps.embed(["probe"]);
  await deps.store.ensureCollection(current.model, current.dimensions);
  let done = 0;
  for (let after: string | undefined; ; ) {
    const rows = await deps.documents.inOtherCollection(current.collection, after, 50);
    if (rows.length === 0) return done;
    for (const row of rows) {
      opts.signal?.throwIfAborted();
      const r = await inSourceTurn(row.userId, row.source, () => moveDocument(deps, row, current.collection, batch, opts.signal));
      // The engines' model changed while this ran: the next upkeep goes on with whichever is current then.
      if (r === "model changed") return done;
      if (r === "moved") done++;
    }
    after = rows[rows.length - 1]!.id;
  }
}

async function moveDocument(
  deps: ReembedDocumentsDeps,
  seen: Document,
  current: string,
  batch: number,
  signal?: AbortSignal,
): Promise<"moved" | "skipped" | "model changed"> {
  // Read again in the turn: an ingestion that went before may have replaced it.
  const row = await deps.documents.bySource(seen.userId, seen.source);
  // FAILED: a re-upload's job failed, and the previous upload's chunks (which the row still names) are retrieved.
  // QUEUED or PROCESSING: a job is writing the new version into the current collection, and drops the old one.
  if (!row || (row.status !== "READY" && row.status !== "FAILED") || !row.collection || row.collection === current) return "skipped";
  const old = row.collection;
  let points: StoredPoint[] = [];
  try {
    points = await allBySource(deps.store, row.userId, old, row.source, 256);
  } catch (err) {
    if (!(err instanceof UnknownCollectionError)) throw err; // dropped with its model: only a copy in the current one can be left
  }
  const version = row.chunksVersion ?? undefined;
  const ofRow = (p: StoredPoint) => p.payload.chunk !== undefined && p.id === chunkPointId(row.source, p.payload.chunk, version);
  points = points.filter(ofRow);
  if (points.length > 0) {
    // A chunk without text cannot be embedded again; the document is then left as it is (its re-upload replaces it).
    if (points.some((p) => typeof p.payload.text !== "string" || p.payload.text === "")) return "skipped";
    const e = await embedBatched(points.map((p) => p.payload.text!), async (inputs) => deps.embed(inputs), { batch, signal });
    const info = await deps.store.ensureCollection(e.model, e.dimensions);
    if (info.name !== current) return "model changed";
    await deps.store.upsert(current, points.map((p, i) => ({ id: p.id, vector: e.vectors[i]!, payload: p.payload })));
    // Only the version moved: another process may be writing a new upload's chunks of the source.
    await deleteChunkVersion(deps.store, row.userId, old, row.source, version); // none: deleted meanwhile, which the row's check below settles
  } else if (!(await allBySource(deps.store, row.userId, current, row.source, 256)).some(ofRow)) {
    // Its chunks are nowhere: nothing to embed again. (Another version's in the current collection, a failed
    // re-upload's partial write, are not its chunks.)
    return "skipped";
  } // else an earlier run stopped between its steps 2 and 3: the chunks are in the current collection already.
  if (await deps.documents.movedTo(row.userId, row.source, old, current)) {
    if (await deps.documents.bySource(row.userId, row.source)) return "moved";
  } else if ((await deps.documents.bySource(row.userId, row.source))?.collection === current) return "moved";
  // Deleted meanwhile: the chunks written here must not outlive it (a new upload's, if any, stay).
  await deleteChunkVersion(deps.store, row.userId, current, row.source, version);
  return "skipped";
}
