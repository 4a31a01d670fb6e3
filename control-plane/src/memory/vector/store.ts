// The vector store behind Jota's long-term memory: one interface, two
// implementations (pgvector.ts in Jota's own database, the default; qdrant.ts
// when QDRANT_URL is set). Both keep one collection per embedding model and
// dimension, because vectors from different models (or dimensions) are not
// comparable: mixing them would give silently meaningless scores.
//
// Contract shared by both implementations (and by the behaviour tests that
// run against each):
// - every upsert and query checks the vector's dimension against the
//   collection's before touching storage, and says both numbers when they
//   differ;
// - a point is keyed by (user, id): two users can use the same id without
//   ever touching each other's point, and every query filters on one user;
// - scores are cosine similarity (1 = same direction), best first;
// - a batch is validated whole before anything is written, so bad input
//   fails with a precise error and leaves the store as it was.
import { createHash } from "node:crypto";

/** What is stored with each vector. Field names follow the filter's. */
export interface MemoryPayload {
  userId: string;
  /** What kind of memory: "document", "note", "conversation", ... */
  kind: string;
  /** Where it came from (a document id, a URL, a conversation): the unit of deleteBySource. */
  source: string;
  language?: string;
  tags?: string[];
  text?: string;
  title?: string;
  /** Position of the chunk in its source. */
  chunk?: number;
}

export interface VectorPoint {
  /** Unique per user within a collection; upserting the same (user, id) replaces the point. */
  id: string;
  vector: ArrayLike<number>;
  payload: MemoryPayload;
}

export interface VectorFilter {
  /** Required: memories are per user, and no query may cross users. */
  userId: string;
  kind?: string;
  source?: string;
  language?: string;
  /** The point carries every one of these tags. */
  tags?: string[];
}

export interface QueryOptions {
  topK: number;
  filter: VectorFilter;
}

export interface ScoredPoint {
  id: string;
  /** Cosine similarity, in [-1, 1]. */
  score: number;
  payload: MemoryPayload;
}

/** A stored point without its vector (listBySource). */
export interface StoredPoint {
  id: string;
  payload: MemoryPayload;
}

/** One page of listBySource; `next`, when there is more, is the next page's `after`. */
export interface PointPage {
  points: StoredPoint[];
  next?: string;
}

export interface CollectionInfo {
  /** What the other methods take. */
  name: string;
  model: string;
  dim: number;
  distance: "cosine";
}

export interface VectorStore {
  readonly kind: "pgvector" | "qdrant";
  /** Creates the collection for (model, dim) if needed; idempotent. */
  ensureCollection(model: string, dim: number): Promise<CollectionInfo>;
  /** The collection's description; UnknownCollectionError if there is none. */
  collection(name: string): Promise<CollectionInfo>;
  upsert(collection: string, points: readonly VectorPoint[]): Promise<void>;
  /** The topK points nearest to `vector` among those the filter keeps, best first. */
  query(collection: string, vector: ArrayLike<number>, opts: QueryOptions): Promise<ScoredPoint[]>;
  /** Deletes the user's points from `source`; returns how many. UnknownDocumentError when there were none. */
  deleteBySource(userId: string, collection: string, source: string): Promise<number>;
  /** Deletes the user's points of these ids (those that exist); returns how many. */
  deletePoints(userId: string, collection: string, ids: readonly string[]): Promise<number>;
  /**
   * The user's points from `source`, without vectors (a model change re-embeds their texts: upkeep.ts), a page
   * of at most `limit` (default 256, at most 1000) at a time, in an order of the store's own; `after` is the
   * previous page's `next`, opaque. UnknownCollectionError if there is no such collection.
   */
  listBySource(userId: string, collection: string, source: string, page?: { limit?: number; after?: string }): Promise<PointPage>;
  /** How many points the filter keeps (all of the collection's without one). */
  count(collection: string, filter?: Partial<VectorFilter>): Promise<number>;
  /** Deletes the collection and all its points (a retired model); UnknownCollectionError if there is none. */
  dropCollection(name: string): Promise<void>;
  close(): Promise<void>;
}

export class VectorStoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export class DimensionMismatchError extends VectorStoreError {
  constructor(
    readonly collection: string,
    readonly expected: number,
    readonly actual: number,
    readonly operation: "upsert" | "query",
    readonly pointId?: string,
  ) {
    super(
      `${operation} on collection "${collection}": it holds ${expected}-dimensional vectors, ` +
        `${pointId === undefined ? "the query vector" : `point "${pointId}"`} has ${actual} dimensions`,
    );
  }
}

export class UnknownCollectionError extends VectorStoreError {
  constructor(readonly collection: string) {
    super(`no vector collection "${collection}" (ensureCollection(model, dim) creates it)`);
  }
}

/**
 * No points of this user come from this source. A source that exists for
 * another user is reported exactly the same way: a caller learns nothing
 * about other users' memories.
 */
export class UnknownDocumentError extends VectorStoreError {
  constructor(
    readonly userId: string,
    readonly source: string,
  ) {
    super(`user ${userId} has no memories from source "${source}"`);
  }
}

/** deleteBySource for callers to whom no points is fine (a first ingest, a delete that raced another): 0 then. */
export async function deleteSourceIfAny(store: VectorStore, userId: string, collection: string, source: string): Promise<number> {
  try {
    return await store.deleteBySource(userId, collection, source);
  } catch (err) {
    if (err instanceof UnknownDocumentError) return 0;
    throw err;
  }
}

/**
 * The point id of a document's chunk: "<source>#<chunk>", and with the
 * version (the ingest job: memory/ingest.ts) "<source>#<chunk>@<version>".
 * Ids are keys that upserts replace: with the version in the id, two
 * uploads of a source never write the same point, so a late job of the
 * older one cannot overwrite the newer one's chunks (it adds its own, which
 * nothing vouches for: retrieve.ts).
 */
export function chunkPointId(source: string, chunk: number, version?: string): string {
  return version === undefined ? `${source}#${chunk}` : `${source}#${chunk}@${version}`;
}

/** The version a document chunk was written with (chunkPointId); undefined for one without, or a point that is no chunk. */
export function chunkVersion(p: { id: string; payload: MemoryPayload }): string | undefined {
  if (p.payload.chunk === undefined) return undefined;
  const bare = chunkPointId(p.payload.source, p.payload.chunk);
  return p.id.startsWith(`${bare}@`) ? p.id.slice(bare.length + 1) : undefined;
}

/** Checks deletePoints's arguments. */
export function checkIds(userId: string, ids: readonly string[]): void {
  if (!nonEmpty(userId)) throw new InvalidVectorInputError(`deletePoints: userId is required`);
  if (!Array.isArray(ids) || !ids.every(nonEmpty)) throw new InvalidVectorInputError(`deletePoints: ids must be an array of non-empty strings`);
}

/**
 * Deletes the user's chunks of `source` in `collection` that were written
 * with `version` (without one: the unversioned ones of chunkPointId);
 * returns how many. 0 when there are none, or no such collection. Points of
 * other versions stay, whatever their number.
 */
export function deleteChunkVersion(store: VectorStore, userId: string, collection: string, source: string, version: string | undefined): Promise<number> {
  return deleteChunksWhere(store, userId, collection, source, (v) => v === version);
}

/** Every one of the user's points from `source` in `collection` (listBySource, page after page of `limit`). */
export async function allBySource(store: VectorStore, userId: string, collection: string, source: string, limit = 1000): Promise<StoredPoint[]> {
  const out: StoredPoint[] = [];
  for (let after: string | undefined; ; ) {
    const page = await store.listBySource(userId, collection, source, { limit, ...(after ? { after } : {}) });
    out.push(...page.points);
    if (!page.next) return out;
    after = page.next;
  }
}

/**
 * Deletes the user's chunks of `source` in `collection` whose version
 * (chunkVersion; undefined: none) `drop` picks; returns how many. 0 when
 * there are none, or no such collection.
 */
export async function deleteChunksWhere(
  store: VectorStore,
  userId: string,
  collection: string,
  source: string,
  drop: (version: string | undefined) => boolean,
): Promise<number> {
  try {
    const ids = (await allBySource(store, userId, collection, source))
      .filter((p) => p.payload.chunk !== undefined && p.payload.source === source && drop(chunkVersion(p)))
      .map((p) => p.id);
    let n = 0;
    for (let i = 0; i < ids.length; i += 1000) n += await store.deletePoints(userId, collection, ids.slice(i, i + 1000));
    return n;
  } catch (err) {
    if (err instanceof UnknownCollectionError) return 0;
    throw err;
  }
}

/** A point, vector or filter that cannot be stored or searched as given. */
export class InvalidVectorInputError extends VectorStoreError {}

/** Collection name for (model, dim): readable, safe as an SQL identifier and a Qdrant name, and unique. */
export function collectionName(model: string, dim: number): string {
  if (typeof model !== "string" || model.trim() === "") throw new InvalidVectorInputError("the embedding model's name is empty");
  checkDim(dim);
  const slug = model
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "_")
    .replace(/^_+|_+$/g, "")
    .slice(0, 30);
  // Different names can share a slug ("a.b" and "a-b"): a hash of the exact
  // name keeps their collections apart.
  const hash = createHash("sha256").update(model).digest("hex").slice(0, 8);
  return `mem_${slug || "model"}_${dim}_${hash}`;
}

export const MAX_DIM = 16_000; // pgvector's limit for the vector type

export function checkDim(dim: number): void {
  if (!Number.isInteger(dim) || dim < 1 || dim > MAX_DIM)
    throw new InvalidVectorInputError(`dimension must be an integer from 1 to ${MAX_DIM}, got ${dim}`);
}

/**
 * Checks one vector for `collection`: its dimension first (the error the
 * caller most needs), then that it is finite and not all zeros (cosine
 * similarity has no value for a zero vector: pgvector would return NaN).
 */
export function checkVector(
  info: CollectionInfo,
  vector: ArrayLike<number>,
  operation: "upsert" | "query",
  pointId?: string,
): void {
  const what = pointId === undefined ? "the query vector" : `point "${pointId}"`;
  if (vector === null || typeof vector !== "object" || typeof vector.length !== "number")
    throw new InvalidVectorInputError(`${operation} on collection "${info.name}": ${what} is not an array of numbers`);
  if (vector.length !== info.dim) throw new DimensionMismatchError(info.name, info.dim, vector.length, operation, pointId);
  let nonZero = false;
  for (let i = 0; i < vector.length; i++) {
    const x = vector[i];
    if (typeof x !== "number" || !Number.isFinite(x))
      throw new InvalidVectorInputError(`${operation} on collection "${info.name}": ${what} has a non-finite value at index ${i} (${x})`);
    // Both stores keep 32-bit floats: a larger value would become infinite.
    if (Math.abs(x) > F32_MAX)
      throw new InvalidVectorInputError(`${operation} on collection "${info.name}": ${what} has a value beyond 32-bit float range at index ${i} (${x})`);
    if (x !== 0) nonZero = true;
  }
  if (!nonZero)
    throw new InvalidVectorInputError(`${operation} on collection "${info.name}": ${what} is all zeros (cosine similarity is undefined)`);
}

const F32_MAX = 3.4028234663852886e38;

const nonEmpty = (v: unknown): v is string => typeof v === "string" && v.length > 0;

/** Validates a whole batch before anything is written. */
export function checkPoints(info: CollectionInfo, points: readonly VectorPoint[]): void {
  if (!Array.isArray(points)) throw new InvalidVectorInputError(`upsert on collection "${info.name}": points must be an array`);
  const seen = new Set<string>();
  for (const [i, p] of points.entries()) {
    const where = `upsert on collection "${info.name}": point ${i}`;
    if (!p || typeof p !== "object") throw new InvalidVectorInputError(`${where} is not an object`);
    if (!nonEmpty(p.id)) throw new InvalidVectorInputError(`${where} has no id (a non-empty string)`);
    const pl = p.payload;
    if (!pl || typeof pl !== "object") throw new InvalidVectorInputError(`${where} ("${p.id}") has no payload`);
    for (const f of ["userId", "kind", "source"] as const)
      if (!nonEmpty(pl[f])) throw new InvalidVectorInputError(`${where} ("${p.id}") has no payload.${f} (a non-empty string)`);
    if (pl.language !== undefined && typeof pl.language !== "string")
      throw new InvalidVectorInputError(`${where} ("${p.id}"): payload.language must be a string`);
    if (pl.tags !== undefined && (!Array.isArray(pl.tags) || !pl.tags.every(nonEmpty)))
      throw new InvalidVectorInputError(`${where} ("${p.id}"): payload.tags must be an array of non-empty strings`);
    for (const f of ["text", "title"] as const)
      if (pl[f] !== undefined && typeof pl[f] !== "string")
        throw new InvalidVectorInputError(`${where} ("${p.id}"): payload.${f} must be a string`);
    if (pl.chunk !== undefined && (!Number.isInteger(pl.chunk) || pl.chunk < 0 || pl.chunk > 2 ** 31 - 1))
      throw new InvalidVectorInputError(`${where} ("${p.id}"): payload.chunk must be a non-negative integer`);
    // Two points with one key in a batch: which one wins would be arbitrary.
    const key = `${pl.userId}\u0000${p.id}`;
    if (seen.has(key)) throw new InvalidVectorInputError(`${where}: id "${p.id}" appears twice for user ${pl.userId} in one batch`);
    seen.add(key);
    checkVector(info, p.vector, "upsert", p.id);
  }
}

export function checkQuery(info: CollectionInfo, vector: ArrayLike<number>, opts: QueryOptions): void {
  const where = `query on collection "${info.name}"`;
  if (!opts || !opts.filter || !nonEmpty(opts.filter.userId))
    throw new InvalidVectorInputError(`${where}: filter.userId is required (memories are per user)`);
  if (!Number.isInteger(opts.topK) || opts.topK < 1 || opts.topK > 1000)
    throw new InvalidVectorInputError(`${where}: topK must be an integer from 1 to 1000, got ${opts.topK}`);
  checkFilter(where, opts.filter);
  checkVector(info, vector, "query");
}

export function checkFilter(where: string, f: Partial<VectorFilter>): void {
  for (const k of ["userId", "kind", "source", "language"] as const)
    if (f[k] !== undefined && typeof f[k] !== "string") throw new InvalidVectorInputError(`${where}: filter.${k} must be a string`);
  if (f.tags !== undefined && (!Array.isArray(f.tags) || !f.tags.every(nonEmpty)))
    throw new InvalidVectorInputError(`${where}: filter.tags must be an array of non-empty strings`);
}

/** Checks listBySource's arguments; returns the page size. */
export function checkListing(userId: string, source: string, page: { limit?: number; after?: string } = {}): number {
  if (!nonEmpty(userId)) throw new InvalidVectorInputError(`listBySource: userId is required`);
  if (!nonEmpty(source)) throw new InvalidVectorInputError(`listBySource: source is required`);
  const limit = page.limit ?? 256;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new InvalidVectorInputError(`listBySource: limit must be an integer from 1 to 1000, got ${limit}`);
  if (page.after !== undefined && !nonEmpty(page.after)) throw new InvalidVectorInputError(`listBySource: after must be a non-empty string (a page's next)`);
  return limit;
}
