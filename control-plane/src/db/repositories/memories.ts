// What Jota remembers about a user (memory/memories.ts keeps the vector store
// in step with these rows). A row is what the user sees and erases; its
// vector follows it. `collection` names where the row's vector is or is
// about to be: it is written before the vector, so that whatever fails after
// that, deleting the row finds the vector (one that nothing names could never
// be deleted, and would keep the old text in the store). `embeddingModel` is
// set once the vector of the current text is stored, and only while the text
// is the one that was embedded (setEmbedded checks the hash, and that nobody
// changed the row between its read and its write), so an update racing an
// embedding never leaves a row claiming a stale vector; retrieval ignores a
// vector whose row does not claim it.
import { createHash } from "node:crypto";
import type { Memory, PrismaClient } from "@prisma/client";
import { NotFoundError, checkId, isId, scoped } from "./errors";
import { keyset, type Page, type PageRequest } from "./pagination";

export interface NewMemory {
  text: string;
  origin?: "extracted" | "user";
  conversationId?: string;
  requestId?: string;
}

/** The text as duplicates are judged: trimmed, lower-cased, runs of white space as one space. */
export function memoryHash(text: string): string {
  const norm = text.normalize("NFKC").trim().toLowerCase().replace(/\s+/g, " ");
  return createHash("sha256").update(norm).digest("hex");
}

export class MemoryRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /** A new memory; `collection`, where its vector is about to be written (not yet embedded). */
  create(userId: string, m: NewMemory, collection?: string): Promise<Memory> {
    return this.prisma.memory.create({
      data: {
        userId,
        text: m.text,
        hash: memoryHash(m.text),
        origin: m.origin ?? "extracted",
        conversationId: m.conversationId ?? null,
        requestId: m.requestId ?? null,
        collection: collection ?? null,
      },
    });
  }

  async get(userId: string, id: string): Promise<Memory> {
    const m = await this.prisma.memory.findFirst({ where: { id: checkId("memory", id), userId } });
    if (!m) throw new NotFoundError("memory", id);
    return m;
  }

  /** The user's memories with these ids (unknown ids are left out). */
  byIds(userId: string, ids: string[]): Promise<Memory[]> {
    const valid = ids.filter(isId);
    if (valid.length === 0) return Promise.resolve([]);
    return this.prisma.memory.findMany({ where: { userId, id: { in: valid } } });
  }

  /** A memory of the user with the same text (as memoryHash judges), if any. */
  async sameText(userId: string, text: string): Promise<Memory | undefined> {
    return (await this.prisma.memory.findFirst({ where: { userId, hash: memoryHash(text) }, orderBy: { createdAt: "asc" } })) ?? undefined;
  }

  /** Newest first. */
  async list(userId: string, req?: PageRequest): Promise<Page<Memory>> {
    const ks = keyset("createdAt", "desc", req);
    return ks.page(await this.prisma.memory.findMany({ where: { userId, ...ks.after }, orderBy: ks.orderBy, take: ks.take }));
  }

  /**
   * New text: its vector is stale until setEmbedded (embeddingModel
   * cleared). `collection` stays: it still names where the old vector is,
   * until embeddingInto moves it.
   */
  update(userId: string, id: string, text: string): Promise<Memory> {
    return scoped("memory", id, () =>
      this.prisma.memory.update({
        where: { id: checkId("memory", id), userId },
        data: { text, hash: memoryHash(text), embeddingModel: null },
      }),
    );
  }

  /**
   * Names `collection` as where the vector of `text` is about to be written
   * (not yet embedded there): the row as it is now, or undefined when the
   * memory is gone or its text changed since. `updatedAt` stays, as in setEmbedded.
   */
  async embeddingInto(userId: string, id: string, text: string, collection: string): Promise<Memory | undefined> {
    const where = { id: checkId("memory", id), userId, hash: memoryHash(text) };
    const now = await this.prisma.memory.findFirst({ where, select: { updatedAt: true } });
    if (!now) return undefined;
    const { count } = await this.prisma.memory.updateMany({ where: { ...where, updatedAt: now.updatedAt }, data: { embeddingModel: null, collection, updatedAt: now.updatedAt } });
    return count === 1 ? ((await this.prisma.memory.findFirst({ where: { id, userId } })) ?? undefined) : undefined;
  }

  /**
   * The vector of `text` is stored in `collection`: the row as it is now, or
   * undefined when the memory is gone or its text changed since. `updatedAt`
   * stays: it says when the fact last changed, not its vector.
   */
  async setEmbedded(userId: string, id: string, text: string, model: string, collection: string): Promise<Memory | undefined> {
    const where = { id: checkId("memory", id), userId, hash: memoryHash(text) };
    const now = await this.prisma.memory.findFirst({ where, select: { updatedAt: true } });
    if (!now) return undefined;
    const { count } = await this.prisma.memory.updateMany({ where: { ...where, updatedAt: now.updatedAt }, data: { embeddingModel: model, collection, updatedAt: now.updatedAt } });
    return count === 1 ? ((await this.prisma.memory.findFirst({ where: { id, userId } })) ?? undefined) : undefined;
  }

  /** Deletes the row and returns it (its collection names the vector to delete). */
  delete(userId: string, id: string): Promise<Memory> {
    return scoped("memory", id, () => this.prisma.memory.delete({ where: { id: checkId("memory", id), userId } }));
  }

  /**
   * Takes an unclaimed memory as it was seen (`updatedAt`) for a second add of its text: its `updatedAt` moves
   * on, which tells the add still storing its vector that the row is no longer its own to take back
   * (deleteIfUnchanged). The row as it is now, or undefined when it changed since (claimed, corrected, gone).
   */
  async adopt(userId: string, id: string, updatedAt: Date): Promise<Memory | undefined> {
    const { count } = await this.prisma.memory.updateMany({
      where: { id: checkId("memory", id), userId, updatedAt, embeddingModel: null },
      data: { updatedAt: new Date(Math.max(Date.now(), updatedAt.getTime() + 1)) },
    });
    return count === 1 ? ((await this.prisma.memory.findFirst({ where: { id, userId } })) ?? undefined) : undefined;
  }

  /**
   * Deletes the memory only while it is as an add left it: unchanged since `updatedAt` and unclaimed (a claimed
   * row is fully stored, whoever claimed it). The deleted row (its collection as it was at the delete), or
   * undefined when it changed, was claimed or is gone.
   */
  async deleteIfUnchanged(userId: string, id: string, updatedAt: Date): Promise<Memory | undefined> {
    try {
      return await this.prisma.memory.delete({ where: { id: checkId("memory", id), userId, updatedAt, embeddingModel: null } });
    } catch (err) {
      if ((err as { code?: unknown }).code === "P2025") return undefined; // no such row, as seen
      throw err;
    }
  }

  /** All of the user's memories (for erasing them all: the caller deletes their vectors first). */
  all(userId: string): Promise<Memory[]> {
    return this.prisma.memory.findMany({ where: { userId }, orderBy: [{ createdAt: "asc" }, { id: "asc" }] });
  }

  /** Deletes these of the user's memories; returns how many. */
  async deleteMany(userId: string, ids: string[]): Promise<number> {
    if (ids.length === 0) return 0;
    return (await this.prisma.memory.deleteMany({ where: { userId, id: { in: ids.filter(isId) } } })).count;
  }

  /**
   * Memories (of every user) whose vector is not in `collection`: never
   * embedded, embedded by another model, or whose last embedding did not
   * finish (a failure or a crash between naming the collection and
   * setEmbedded). Oldest first, `limit` at a time.
   */
  notIn(collection: string, limit: number): Promise<Memory[]> {
    return this.prisma.memory.findMany({
      where: { OR: [{ collection: null }, { collection: { not: collection } }, { embeddingModel: null }] },
      orderBy: [{ createdAt: "asc" }, { id: "asc" }],
      take: limit,
    });
  }

  /** Users who have memories (for per-user upkeep), a page at a time. */
  async usersWithMemories(after: string | undefined, limit: number): Promise<string[]> {
    const rows = await this.prisma.memory.findMany({
      where: after ? { userId: { gt: after } } : {},
      distinct: ["userId"],
      select: { userId: true },
      orderBy: { userId: "asc" },
      take: limit,
    });
    return rows.map((r) => r.userId);
  }
}
