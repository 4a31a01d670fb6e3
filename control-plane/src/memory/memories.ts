// What Jota remembers about each user: rows in the database (what the user
// lists and erases: db/repositories/memories.ts) and one vector per row in the
// vector store (what retrieval finds: kind "memory", point id = row id,
// source "memory:<id>", so a turn cites it like a document chunk).
//
// The row is the truth; its vector follows. A row names the collection of
// its vector before the vector is written there, and claims the vector
// (embeddingModel) only once it is stored: whatever fails in between, a
// delete finds the vector, and retrieval (which uses only vectors their row
// claims, with the row's text) never shows a stale one.
// - add: embed (no write yet), the row naming the collection, the vector,
//   then the row claims it. A failure after the row is undone as a delete
//   would (the vector, which the failed write may have stored, then the row),
//   so a failed add leaves nothing; only when that undo fails too (or a crash
//   comes first) does the row stay, unclaimed and naming where its vector may
//   be: retrieval ignores it, a delete finds its vector, nightly upkeep
//   embeds it, and the caller is told so (MemoryAddNotUndoneError). A second
//   add of the same text meanwhile waits for the first to settle
//   (#settledSameText) rather than hand out an id the undo then deletes.
// - update: the row's new text first (unclaimed, still naming its vector's
//   collection); a vector in another collection (another model's) is then
//   deleted and the row names the new one, as for any store; then the new
//   vector replaces the old one under the same id. Should that fail, the old
//   text's vector may still be there, named by the row (so a delete removes
//   it) and unclaimed (so retrieval ignores it).
// - delete: the vector first, then the row, so a memory the user erased is
//   never found again even if the second step fails (they can delete again).
import type { Memory } from "@prisma/client";
import { NotFoundError } from "../db/repositories/errors";
import type { Repositories } from "../db/repositories";
import type { MemoryRepository, NewMemory } from "../db/repositories/memories";
import type { EnginePool } from "../engines/pool";
import { embedTexts, type Embedded } from "./embedder";
import { UnknownCollectionError, UnknownDocumentError, type VectorStore } from "./vector/store";

/** Longest memory text, in characters: a memory is one fact, not a document. */
export const MAX_MEMORY_CHARS = 500;

export const MEMORY_KIND = "memory";

/** Memories of one user compared by dedupe (the newest). */
export const MAX_DEDUPE = 2000;
const EMBED_BATCH = 32;
/**
 * How long a second add of the same text waits for an add still storing its vector (which takes the row back
 * should that fail) before it adopts the row, and how often it looks again meanwhile (#settledSameText).
 */
const IN_FLIGHT_MS = 10_000;
const IN_FLIGHT_POLL_MS = 25;

function dot(a: number[], b: number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** The vector store source of a memory's point (the unit deleteBySource removes). */
export const memorySource = (id: string) => `memory:${id}`;

export class InvalidMemoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidMemoryError";
  }
}

/**
 * An add failed (`cause`) after its row was written, and undoing it failed too
 * (`undoError`: the database or the store is down), or the row was corrected
 * meanwhile: the memory `memoryId` stays. It is not claimed (retrieval does
 * not use it), it names where its vector may be (deleting it removes that),
 * and upkeep embeds it. Unlike `cause` alone, this is not "nothing changed".
 */
export class MemoryAddNotUndoneError extends Error {
  constructor(
    readonly memoryId: string,
    override readonly cause: unknown,
    readonly undoError?: unknown,
  ) {
    const why = (e: unknown) => (e instanceof Error ? e.message : String(e));
    super(
      `the memory could not be stored (${why(cause)}) and ` +
        (undoError === undefined
          ? `was changed meanwhile (corrected, or taken by another add of the same text): memory ${memoryId} stays (deleting it forgets it)`
          : `could not be taken back (${why(undoError)}): memory ${memoryId} stays, not yet embedded (retrieval does not use it until upkeep embeds it; deleting it forgets it)`),
    );
    this.name = "MemoryAddNotUndoneError";
  }
}

/** A memory found by similarity. */
export interface ScoredMemory {
  memory: Memory;
  score: number;
}

export type Embed = (texts: string[]) => Promise<Embedded>;

export class Memories {
  /** Embeds on the pool's current embedding model (one call); upkeep re-embeds documents with it too. */
  readonly embed: Embed;

  readonly rows: MemoryRepository;
  /** IN_FLIGHT_MS unless the caller (a test) sets it. */
  private readonly inFlightMs: number;
  /** Erases a forgotten memory's text from the turns that cited it. */
  private readonly eraseCitations: (userId: string, source: string) => Promise<unknown>;

  constructor(
    repos: Pick<Repositories, "memories" | "requests">,
    /** Where the vectors are; upkeep moves documents' chunks in it too. */
    readonly store: VectorStore,
    embed: EnginePool | Embed,
    opts: { inFlightMs?: number } = {},
  ) {
    this.inFlightMs = opts.inFlightMs ?? IN_FLIGHT_MS;
    this.rows = repos.memories;
    this.eraseCitations = (userId, source) => repos.requests.eraseSource(userId, source);
    this.embed = typeof embed === "function" ? embed : (texts) => embedTexts(embed, texts);
  }

  /** The text a memory may have: trimmed, non-empty, one line of at most MAX_MEMORY_CHARS. */
  static clean(text: unknown): string {
    if (typeof text !== "string") throw new InvalidMemoryError("a memory's text must be a string");
    const t = text.replace(/\s+/g, " ").trim();
    if (t === "") throw new InvalidMemoryError("a memory's text must not be empty");
    if (t.length > MAX_MEMORY_CHARS) throw new InvalidMemoryError(`a memory's text is at most ${MAX_MEMORY_CHARS} characters (got ${t.length})`);
    return t;
  }

  /**
   * Remembers `m.text` for the user; a memory with the same text (as
   * memoryHash judges) is returned instead of a second one.
   */
  async add(userId: string, m: NewMemory): Promise<{ memory: Memory; created: boolean }> {
    const text = Memories.clean(m.text);
    const same = await this.#settledSameText(userId, text);
    if (same) return { memory: same, created: false };
    const e = await this.embed([text]);
    const row = await this.rows.create(userId, { ...m, text }, e.collection);
    try {
      return { memory: await this.#storeVector(row, e, 0), created: true };
    } catch (err) {
      throw await this.#undoAdd(row, err);
    }
  }

  /**
   * The memory with the same text, once it is no longer in flight. A row that is unclaimed and was created
   * within inFlightMs may be another add's (in this process or another) that is still storing its vector,
   * and that add takes the row back if it fails: returned now, its id would 404 a moment later. So that row
   * is polled until it is claimed (returned) or gone (undefined: this add makes its own); past inFlightMs (a
   * stalled store, or an add that crashed or could not undo) it is adopted, which the other add's undo
   * respects, and returned unclaimed, for upkeep to embed.
   */
  async #settledSameText(userId: string, text: string): Promise<Memory | undefined> {
    // Also on this process's clock: `updatedAt` is the writer's, which may be ahead.
    const giveUp = Date.now() + this.inFlightMs;
    for (;;) {
      const same = await this.rows.sameText(userId, text);
      if (!same || same.embeddingModel !== null) return same;
      // From its creation: only the add that created a row takes it back (an adoption does not make it young again).
      if (Date.now() - same.createdAt.getTime() < this.inFlightMs && Date.now() < giveUp) {
        await new Promise((resolve) => setTimeout(resolve, IN_FLIGHT_POLL_MS));
        continue;
      }
      // An add stalled past the limit (a store that hangs) may still take the row back: adopted, it does not.
      const adopted = await this.rows.adopt(userId, same.id, same.updatedAt);
      if (adopted) return adopted;
      // Changed meanwhile (claimed, corrected or taken back): look again.
    }
  }

  /**
   * Takes back the row of an add whose vector could not be stored, as a delete would: the vector first (the
   * failed write may have stored it; the row names its collection), then the row, so no vector is ever left
   * without a row naming it. Returns what the add should throw: `cause` when nothing is left, otherwise a
   * MemoryAddNotUndoneError (the undo failed, and the row stays as the file's comment says; or the row was
   * corrected meanwhile, which makes it its corrector's, not this add's to take back).
   */
  async #undoAdd(row: Memory, cause: unknown): Promise<unknown> {
    try {
      const now = (await this.rows.byIds(row.userId, [row.id]))[0];
      if (!now) return cause; // gone already (deleted meanwhile: its delete took its vector)
      // Corrected, adopted by a second add of the text (#settledSameText), or claimed (fully stored: the claim
      // landed though the add saw it fail, or upkeep embedded it): no longer this add's to take back.
      if (now.hash !== row.hash || now.updatedAt.getTime() !== row.updatedAt.getTime() || now.embeddingModel !== null)
        return new MemoryAddNotUndoneError(row.id, cause);
      // The row goes only while it is still so (deleteIfUnchanged). Citations too: a turn may have cited it if
      // upkeep claimed it for a moment.
      const gone = await this.#forget(now, true, (r) => this.rows.deleteIfUnchanged(r.userId, r.id, r.updatedAt));
      if (gone) return cause;
      if ((await this.rows.byIds(row.userId, [row.id])).length === 0) return cause; // deleted meanwhile
      return new MemoryAddNotUndoneError(row.id, cause);
    } catch (undoError) {
      if (undoError instanceof NotFoundError) return cause; // deleted while this undid it
      return new MemoryAddNotUndoneError(row.id, cause, undoError);
    }
  }

  /** New text for a memory of the user (NotFoundError if it is not theirs). */
  async update(userId: string, id: string, text: string): Promise<Memory> {
    const t = Memories.clean(text);
    await this.rows.get(userId, id); // 404 before an engine call
    const e = await this.embed([t]);
    // The row keeps naming its old vector; #storeVector moves it to e's collection if that is another one.
    const row = await this.rows.update(userId, id, t);
    return this.#storeVector(row, e, 0);
  }

  /** Forgets one memory (NotFoundError if it is not the user's), and its text in the turns that cited it. */
  async delete(userId: string, id: string): Promise<Memory> {
    return this.#forget(await this.rows.get(userId, id), true);
  }

  /**
   * The vector, then the citations (a failure there leaves the row, so the
   * caller can try again), then the row (`remove`: unconditionally, unless
   * the caller deletes it only on a condition, and then undefined when it
   * stays); then the vector once more: a correction racing this delete may
   * have stored one meanwhile (under the collection the deleted row names).
   */
  async #forget<R extends Memory | undefined = Memory>(
    row: Memory,
    eraseCitations: boolean,
    remove: (row: Memory) => Promise<R> = (r) => this.rows.delete(r.userId, r.id) as Promise<R>,
  ): Promise<R> {
    await this.#dropVector(row);
    if (eraseCitations) await this.eraseCitations(row.userId, memorySource(row.id));
    const gone = await remove(row);
    if (gone) await this.#dropVector(gone);
    return gone;
  }

  /** Forgets everything Jota remembers about the user; returns how many. */
  async deleteAll(userId: string): Promise<number> {
    let n = 0;
    for (const row of await this.rows.all(userId))
      try {
        await this.#forget(row, true);
        n++;
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err; // forgotten meanwhile
      }
    return n;
  }

  /** The user's memories most similar to `text`, best first. */
  async search(userId: string, text: string, topK: number): Promise<ScoredMemory[]> {
    const e = await this.embed([text]);
    let points;
    try {
      points = await this.store.query(e.collection, e.vectors[0]!, { topK, filter: { userId, kind: MEMORY_KIND } });
    } catch (err) {
      if (err instanceof UnknownCollectionError) return [];
      throw err;
    }
    const rows = new Map((await this.rows.byIds(userId, points.map((p) => p.id))).map((r) => [r.id, r]));
    // A point whose row is gone (deleted while this ran) is not a memory any more.
    return points.flatMap((p) => (rows.has(p.id) ? [{ memory: rows.get(p.id)!, score: p.score }] : []));
  }

  /**
   * Forgets the user's duplicate memories: the same text (as memoryHash
   * judges), or texts whose embeddings have cosine similarity >= minScore.
   * Of each such group the most recently updated memory stays (it says it
   * most recently). Only the newest MAX_DEDUPE memories are compared.
   * Returns how many were forgotten.
   */
  async dedupe(userId: string, minScore: number, signal?: AbortSignal): Promise<{ exact: number; near: number }> {
    const rows = (await this.rows.all(userId)).sort((a, b) => b.updatedAt.getTime() - a.updatedAt.getTime() || (a.id < b.id ? 1 : -1)).slice(0, MAX_DEDUPE);
    const seen = new Set<string>();
    const exact: Memory[] = [];
    const distinct: Memory[] = [];
    for (const r of rows) {
      (seen.has(r.hash) ? exact : distinct).push(r);
      seen.add(r.hash);
    }
    const near: Memory[] = [];
    if (minScore <= 1 && distinct.length > 1) {
      const kept: number[][] = [];
      for (let i = 0; i < distinct.length; i += EMBED_BATCH) {
        signal?.throwIfAborted();
        const part = distinct.slice(i, i + EMBED_BATCH);
        const e = await this.embed(part.map((r) => r.text));
        for (const [j, v] of e.vectors.entries()) {
          if (kept.some((k) => dot(k, v) >= minScore)) near.push(part[j]!);
          else kept.push(v);
        }
      }
    }
    const forgotten = { exact: 0, near: 0 };
    for (const [list, key] of [[exact, "exact"], [near, "near"]] as const)
      for (const r of list) {
        signal?.throwIfAborted();
        try {
          // The fact is still remembered (by the copy that stays): what cited this copy keeps its text.
          await this.#forget(await this.rows.get(userId, r.id), false);
          forgotten[key]++;
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err; // erased meanwhile
        }
      }
    return forgotten;
  }

  /**
   * Embeds rows whose vector is missing or from another model than the
   * pool's current one, `batch` at a time, into the current collection, and
   * removes their old vectors. Returns how many were (re-)embedded.
   */
  async reembed(batch = 32, signal?: AbortSignal): Promise<number> {
    let done = 0;
    // The current model's collection, from a probe: rows already in it are left alone.
    let current = (await this.embed(["probe"])).collection;
    const skipped = new Set<string>();
    for (;;) {
      signal?.throwIfAborted();
      const rows = (await this.rows.notIn(current, batch + skipped.size)).filter((r) => !skipped.has(r.id)).slice(0, batch);
      if (rows.length === 0) return done;
      const e = await this.embed(rows.map((r) => r.text));
      // The engines' model changed meanwhile (or engines of two models share the pool): stop here rather
      // than move rows back and forth; the next upkeep goes on with whichever model is current then.
      if (e.collection !== current) return done;
      for (const [i, row] of rows.entries()) {
        const stored = await this.#storeVector(row, e, i);
        if (stored.collection === e.collection && stored.embeddingModel !== null) done++;
        else skipped.add(row.id); // changed or deleted meanwhile: its writer embeds it
      }
    }
  }

  async #storeVector(row: Memory, e: Embedded, i: number, tries = 0): Promise<Memory> {
    await this.store.ensureCollection(e.model, e.dimensions);
    if (row.collection !== e.collection) {
      // The row names the collection before the vector goes there (see the file's comment); the vector it
      // named until now (another model's, or none) is deleted first, since nothing would name it after.
      await this.#dropVector(row);
      const named = await this.rows.embeddingInto(row.userId, row.id, row.text, e.collection);
      if (!named) return this.#changedMeanwhile(row, e, tries);
      row = named;
    }
    await this.store.upsert(e.collection, [
      {
        id: row.id,
        vector: e.vectors[i]!,
        payload: { userId: row.userId, kind: MEMORY_KIND, source: memorySource(row.id), text: row.text, title: "Memory" },
      },
    ]);
    const embedded = await this.rows.setEmbedded(row.userId, row.id, row.text, e.model, e.collection);
    if (embedded) return embedded;
    return this.#changedMeanwhile(row, e, tries);
  }

  /**
   * The row changed or went away while its vector was written: a deleted row must not leave its vector behind,
   * and a changed one must not keep the vector of its old text (which this write may have put back over the
   * newer one): its current text is stored again, until a write sticks.
   */
  async #changedMeanwhile(row: Memory, e: Embedded, tries: number): Promise<Memory> {
    const now = (await this.rows.byIds(row.userId, [row.id]))[0];
    if (!now) {
      await this.#dropVector({ ...row, collection: e.collection });
      return row;
    }
    if (tries >= 3) return now; // still changing under us: the last writer stores its own
    return this.#storeVector(now, await this.embed([now.text]), 0, tries + 1);
  }

  async #dropVector(row: Pick<Memory, "id" | "userId" | "collection">): Promise<void> {
    if (!row.collection) return;
    try {
      await this.store.deleteBySource(row.userId, row.collection, memorySource(row.id));
    } catch (err) {
      if (!(err instanceof UnknownDocumentError || err instanceof UnknownCollectionError)) throw err;
    }
  }
}
