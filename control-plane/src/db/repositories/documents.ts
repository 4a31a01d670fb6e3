// Documents a user gave Jota to remember: one row per (user, source), what
// the user lists and deletes. The chunks themselves are in the vector store;
// the ingest job (jobs/) moves a row from QUEUED to READY or FAILED, and only
// for the job it names, so a job of an older upload of the same source,
// ending late, cannot overwrite the newer upload's state.
import type { Document, PrismaClient } from "@prisma/client";
import { NotFoundError, checkId, scoped } from "./errors";
import { keyset, type Page, type PageRequest } from "./pagination";

export interface NewDocument {
  source: string;
  title?: string;
  kind?: string;
  mediaType: string;
  bytes: number;
  jobId: string;
}

export class DocumentRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /** Records an upload (QUEUED): a new source, or a new version of one the user has, which starts over. */
  queue(userId: string, d: NewDocument): Promise<Document> {
    const fields = { title: d.title ?? null, kind: d.kind ?? "document", mediaType: d.mediaType, bytes: d.bytes, jobId: d.jobId };
    return this.prisma.document.upsert({
      where: { userId_source: { userId, source: d.source } },
      create: { userId, source: d.source, ...fields },
      update: { ...fields, status: "QUEUED", chunks: null, error: null, ingestedAt: null },
      // `collection` and `chunksVersion` stay: the old version's chunks are there, and the ones retrieval
      // finds, until the new job is READY.
    });
  }

  /**
   * The job finished: READY with its chunk count, and the title found in the
   * file (an HTML <title>, a PDF's) when the upload gave none; its chunks
   * (`version`'s, which the job wrote) become the document's current ones.
   * False when the row is gone or belongs to another job now.
   */
  async ready(userId: string, source: string, jobId: string, chunks: number, collection: string, version: string, title?: string): Promise<boolean> {
    const { count } = await this.prisma.document.updateMany({
      where: { userId, source, jobId },
      data: { status: "READY", chunks, collection, chunksVersion: version, error: null, ingestedAt: new Date() },
    });
    if (count === 1 && title) await this.prisma.document.updateMany({ where: { userId, source, jobId, title: null }, data: { title } });
    return count === 1;
  }

  /**
   * Chunks of the source were written to `collection` by a job the row no
   * longer names (an older upload's, ending after the re-upload): a row that
   * names no collection yet names this one, so that deleting the document
   * finds those chunks. False when the row is gone or names one already.
   */
  async chunksIn(userId: string, source: string, collection: string): Promise<boolean> {
    const { count } = await this.prisma.document.updateMany({ where: { userId, source, collection: null }, data: { collection } });
    return count === 1;
  }

  /**
   * Upkeep: READY documents whose chunks are in another collection than
   * `collection` (another embedding model's), by id after `after`.
   */
  inOtherCollection(collection: string, after: string | undefined, limit: number): Promise<Document[]> {
    return this.prisma.document.findMany({
      // FAILED too: a re-upload that failed leaves the previous upload's chunks the ones retrieval finds.
      where: { status: { in: ["READY", "FAILED"] }, collection: { not: null }, NOT: { collection }, ...(after ? { id: { gt: after } } : {}) },
      orderBy: { id: "asc" },
      take: limit,
    });
  }

  /**
   * Upkeep moved the source's chunks from `from` to `to`: the row names `to`
   * while it names `from`, whatever its state (a re-upload queued meanwhile
   * still needs it to name where the chunks are until its own job ends).
   * False when the row is gone or names another collection.
   */
  async movedTo(userId: string, source: string, from: string, to: string): Promise<boolean> {
    const { count } = await this.prisma.document.updateMany({ where: { userId, source, collection: from }, data: { collection: to } });
    return count === 1;
  }

  /** The job failed for good: FAILED with its reason. False when the row is gone or belongs to another job now. */
  async failed(userId: string, source: string, jobId: string, error: string): Promise<boolean> {
    const { count } = await this.prisma.document.updateMany({ where: { userId, source, jobId }, data: { status: "FAILED", error } });
    return count === 1;
  }

  async get(userId: string, id: string): Promise<Document> {
    const d = await this.prisma.document.findFirst({ where: { id: checkId("document", id), userId } });
    if (!d) throw new NotFoundError("document", id);
    return d;
  }

  /** The user's document of that source, if any. */
  async bySource(userId: string, source: string): Promise<Document | undefined> {
    return (await this.prisma.document.findUnique({ where: { userId_source: { userId, source } } })) ?? undefined;
  }

  /**
   * Retrieval: for each of `sources` the user has a row for, the version
   * whose chunks are current (null when the row names none).
   */
  async chunksVersions(userId: string, sources: readonly string[]): Promise<Map<string, string | null>> {
    if (sources.length === 0) return new Map();
    const rows = await this.prisma.document.findMany({
      where: { userId, source: { in: [...new Set(sources)] } },
      select: { source: true, chunksVersion: true },
    });
    return new Map(rows.map((r) => [r.source, r.chunksVersion]));
  }

  /** Newest first. */
  async list(userId: string, req?: PageRequest): Promise<Page<Document>> {
    const ks = keyset("createdAt", "desc", req);
    return ks.page(await this.prisma.document.findMany({ where: { userId, ...ks.after }, orderBy: ks.orderBy, take: ks.take }));
  }

  /** Deletes the row and returns it (its source names the chunks to delete from the vector store). */
  delete(userId: string, id: string): Promise<Document> {
    return scoped("document", id, () => this.prisma.document.delete({ where: { id: checkId("document", id), userId } }));
  }

  /**
   * Notes that the user is deleting the document `source`, before its cited
   * text is erased from past turns: a turn that retrieved it earlier and is
   * written after that erasure finds the note when it ends (erasedSince).
   */
  async noteErased(userId: string, source: string, at = new Date()): Promise<void> {
    await this.prisma.erasedSource.create({ data: { userId, source, erasedAt: at } });
  }

  /** Which of `sources` the user deleted at or after `since`. */
  async erasedSince(userId: string, sources: readonly string[], since: Date): Promise<string[]> {
    if (sources.length === 0) return [];
    const rows = await this.prisma.erasedSource.findMany({
      where: { userId, source: { in: [...new Set(sources)] }, erasedAt: { gte: since } },
      select: { source: true },
      distinct: ["source"],
    });
    return rows.map((r) => r.source);
  }

  /** Upkeep: forgets deletion notes older than `before` (no turn runs that long). Returns how many. */
  async pruneErasedBefore(before: Date): Promise<number> {
    return (await this.prisma.erasedSource.deleteMany({ where: { erasedAt: { lt: before } } })).count;
  }
}
