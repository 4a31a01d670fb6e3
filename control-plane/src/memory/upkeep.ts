// Nightly upkeep (a repeatable job: jobs/memory.ts schedules it at
// JOTA_UPKEEP_AT): each step on its own, so one failing does not stop the
// others, and each safe to run again.
// - dedupe: per user, memories with the same text or near-identical meaning
//   (embeddings' cosine similarity >= 0.95) are forgotten but the newest;
// - re-embed: memories never embedded, or embedded by another model than
//   the engines' current one, get a vector of the current model (and lose
//   the old one), so retrieval, which queries the current model's
//   collection, finds them again after a model change;
// - re-embed-documents: the same for documents: the chunks of READY
//   documents in another model's collection are embedded again from their
//   payloads' text and moved to the current one (reembed-documents.ts);
// - retention: finished requests older than JOTA_RETENTION_DAYS are
//   deleted (their messages stay), and notes of deleted documents older
//   than a day (a turn that could still need one ends far sooner);
// - stale requests: requests still in flight after a day, left by a
//   process that stopped mid-turn, end FAILED (the embedded database does
//   this at every start already: gateway/src/stack.ts);
// - vacuum: on the embedded database only, VACUUM (ANALYZE) of its tables
//   (db/maintenance.ts: PGlite has no autovacuum), last, so that it
//   reclaims what retention deleted.
import type { DirectSql } from "../db/direct-sql";
import { vacuumEmbedded } from "../db/maintenance";
import type { Repositories } from "../db/repositories";
import type { Logger } from "../log";
import type { Memories } from "./memories";
import { reembedDocuments } from "./reembed-documents";

/** The cause stored on a request its process never finished. */
export const INTERRUPTED = "the server stopped while this turn ran; it was never finished";

export interface UpkeepOptions {
  /** Finished requests older than this many days are deleted; 0 keeps them all. */
  retentionDays: number;
  /** Cosine similarity from which two memories say the same. Default 0.95. */
  nearDuplicateScore?: number;
}

export interface UpkeepResult {
  users: number;
  duplicates: number;
  nearDuplicates: number;
  reembedded: number;
  /** Documents whose chunks were embedded again by the current model and moved to its collection. */
  documentsReembedded: number;
  requestsPruned: number;
  /** Notes of deleted documents forgotten (DocumentRepository.noteErased). */
  erasedNotesPruned: number;
  /** Requests left in flight for over a day by a process that stopped, now FAILED. */
  staleRequestsFailed: number;
  /** Tables vacuumed (embedded database only; 0 on PostgreSQL, whose autovacuum does it). */
  tablesVacuumed: number;
  /** Steps that failed, with why (the others ran). */
  errors: string[];
}

export async function runUpkeep(
  deps: { repos: Repositories; memories: Memories; logger: Logger; sql?: DirectSql },
  opts: UpkeepOptions,
  signal?: AbortSignal,
): Promise<UpkeepResult> {
  const r: UpkeepResult = { users: 0, duplicates: 0, nearDuplicates: 0, reembedded: 0, documentsReembedded: 0, requestsPruned: 0, staleRequestsFailed: 0, erasedNotesPruned: 0, tablesVacuumed: 0, errors: [] };
  const step = async (name: string, fn: () => Promise<void>) => {
    signal?.throwIfAborted();
    try {
      await fn();
    } catch (err) {
      if (signal?.aborted) throw err;
      r.errors.push(`${name}: ${(err as Error)?.message ?? String(err)}`);
      deps.logger.warn("upkeep step failed", { step: name, error: (err as Error)?.message ?? String(err) });
    }
  };

  await step("dedupe", async () => {
    for (let after: string | undefined; ; ) {
      const users = await deps.repos.memories.usersWithMemories(after, 100);
      if (users.length === 0) break;
      for (const u of users) {
        const d = await deps.memories.dedupe(u, opts.nearDuplicateScore ?? 0.95, signal);
        r.users++;
        r.duplicates += d.exact;
        r.nearDuplicates += d.near;
      }
      after = users[users.length - 1];
    }
  });
  await step("reembed", async () => {
    r.reembedded = await deps.memories.reembed(32, signal);
  });
  await step("re-embed-documents", async () => {
    r.documentsReembedded = await reembedDocuments({ documents: deps.repos.documents, store: deps.memories.store, embed: deps.memories.embed }, { signal });
  });
  await step("retention", async () => {
    if (opts.retentionDays <= 0) return;
    r.requestsPruned = await deps.repos.requests.pruneFinishedBefore(new Date(Date.now() - opts.retentionDays * 86_400_000));
  });
  await step("stale-requests", async () => {
    // No turn runs for a day (engines stall out in minutes): one still in flight was left by a process that stopped.
    r.staleRequestsFailed = await deps.repos.requests.failInFlight(new Date(Date.now() - 86_400_000), INTERRUPTED);
  });
  await step("erased-notes", async () => {
    r.erasedNotesPruned = await deps.repos.documents.pruneErasedBefore(new Date(Date.now() - 86_400_000));
  });
  await step("vacuum", async () => {
    if (!deps.sql) return;
    const v = await vacuumEmbedded(deps.sql, signal);
    r.tablesVacuumed = v.tables;
    if (v.tables > 0) deps.logger.info("embedded database vacuumed", { tables: v.tables, ms: Math.round(v.ms) });
  });
  deps.logger.info("upkeep done", { ...r });
  return r;
}
