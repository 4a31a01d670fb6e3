// The vector store on Qdrant, used instead of pgvector when QDRANT_URL is set
// (the compose file runs Qdrant), through @qdrant/js-client-rest.
//
// Layout mirrors pgvector.ts: one Qdrant collection per embedding model and
// dimension (named by collectionName(), cosine distance), keyword payload
// indexes on the filter fields (user_id as the tenant key), and a small
// registry collection, jota_vector_collections, that records each
// collection's model and dimension (Qdrant keeps the size but not the model).
//
// Point ids: Qdrant takes only unsigned integers and UUIDs, and Jota's points
// are keyed by (user, id); the Qdrant id is a UUID derived from both (SHA-256,
// shaped as a version-5-style UUID), and the caller's id travels in the
// payload as point_id.
//
// Qdrant has no transactions: deleteBySource counts, then deletes by filter,
// so a point written between the two by another writer is deleted with the
// rest; upserts of one call are one request (Qdrant applies it whole).
import { createHash } from "node:crypto";
import { QdrantClient } from "@qdrant/js-client-rest";
import {
  UnknownCollectionError,
  UnknownDocumentError,
  InvalidVectorInputError,
  VectorStoreError,
  checkDim,
  checkFilter,
  checkIds,
  checkListing,
  checkPoints,
  checkQuery,
  collectionName,
  type CollectionInfo,
  type MemoryPayload,
  type PointPage,
  type QueryOptions,
  type ScoredPoint,
  type VectorFilter,
  type VectorPoint,
  type VectorStore,
} from "./store";

export interface QdrantOptions {
  url: string;
  apiKey?: string;
  /** hnsw_ef per search; at least topK is used. */
  efSearch?: number;
  /** Points per upsert request. */
  batchSize?: number;
}

const REGISTRY = "jota_vector_collections";
const FILTER_FIELDS = ["user_id", "kind", "source", "language", "tags"] as const;

type Condition = { key: string; match: { value: string } };
type QdrantPayload = {
  point_id: string;
  user_id: string;
  kind: string;
  source: string;
  language?: string;
  tags: string[];
  title?: string;
  text?: string;
  chunk?: number;
};

/** A UUID from the SHA-256 of `parts`: stable, and distinct for distinct (user, id). */
export function pointUuid(...parts: string[]): string {
  const h = createHash("sha256").update(parts.join("\u0000")).digest("hex");
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function conditions(f: Partial<VectorFilter>): Condition[] {
  const must: Condition[] = [];
  for (const [key, v] of [
    ["user_id", f.userId],
    ["kind", f.kind],
    ["source", f.source],
    ["language", f.language],
  ] as const)
    if (v !== undefined) must.push({ key, match: { value: v } });
  // Every tag must be present: one condition per tag.
  for (const t of f.tags ?? []) must.push({ key: "tags", match: { value: t } });
  return must;
}

function payloadOf(p: QdrantPayload): MemoryPayload {
  const out: MemoryPayload = { userId: p.user_id, kind: p.kind, source: p.source };
  if (p.language != null) out.language = p.language;
  if (p.tags?.length) out.tags = p.tags;
  if (p.title != null) out.title = p.title;
  if (p.text != null) out.text = p.text;
  if (p.chunk != null) out.chunk = p.chunk;
  return out;
}

function status(err: unknown): number | undefined {
  const s = (err as { status?: unknown })?.status;
  return typeof s === "number" ? s : undefined;
}

export class QdrantVectorStore implements VectorStore {
  readonly kind = "qdrant" as const;
  private readonly known = new Map<string, CollectionInfo>();
  private readonly efSearch: number;
  private readonly batchSize: number;

  private constructor(
    private readonly client: QdrantClient,
    readonly url: string,
    opts: QdrantOptions,
  ) {
    this.efSearch = opts.efSearch ?? 128;
    this.batchSize = opts.batchSize ?? 256;
  }

  /** Connects to Qdrant at `url` and makes sure the registry collection exists. */
  static async open(opts: QdrantOptions): Promise<QdrantVectorStore> {
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw new InvalidVectorInputError(`QDRANT_URL is not a URL: "${opts.url}"`);
    }
    const client = new QdrantClient({ url: url.toString().replace(/\/$/, ""), apiKey: opts.apiKey, checkCompatibility: false });
    const store = new QdrantVectorStore(client, url.origin, opts);
    try {
      await store.createIfMissing(REGISTRY, 1, []);
    } catch (err) {
      throw new VectorStoreError(`cannot use Qdrant at ${url.origin}: ${(err as Error).message}`);
    }
    return store;
  }

  async ensureCollection(model: string, dim: number): Promise<CollectionInfo> {
    checkDim(dim);
    const name = collectionName(model, dim);
    const cached = this.known.get(name);
    if (cached) return cached;
    const existing = await this.registered(name);
    if (existing) {
      if (existing.model !== model || existing.dim !== dim)
        throw new VectorStoreError(`collection "${name}" already belongs to model "${existing.model}" (${existing.dim} dimensions)`);
    } else {
      await this.createIfMissing(name, dim, FILTER_FIELDS);
      await this.client.upsert(REGISTRY, {
        wait: true,
        points: [{ id: pointUuid(name), vector: [1], payload: { name, model, dim } }],
      });
    }
    const info: CollectionInfo = { name, model, dim, distance: "cosine" };
    this.known.set(name, info);
    return info;
  }

  async collection(name: string): Promise<CollectionInfo> {
    const cached = this.known.get(name);
    if (cached) return cached;
    if (typeof name !== "string" || !/^mem_[a-z0-9_]+$/.test(name)) throw new UnknownCollectionError(String(name));
    const info = await this.registered(name);
    if (!info) throw new UnknownCollectionError(name);
    this.known.set(name, info);
    return info;
  }

  async upsert(collection: string, points: readonly VectorPoint[]): Promise<void> {
    const info = await this.collection(collection);
    checkPoints(info, points);
    for (let i = 0; i < points.length; i += this.batchSize)
      await this.client.upsert(info.name, {
        wait: true,
        points: points.slice(i, i + this.batchSize).map((p) => {
          const payload: QdrantPayload = {
            point_id: p.id,
            user_id: p.payload.userId,
            kind: p.payload.kind,
            source: p.payload.source,
            tags: p.payload.tags ?? [],
          };
          if (p.payload.language !== undefined) payload.language = p.payload.language;
          if (p.payload.title !== undefined) payload.title = p.payload.title;
          if (p.payload.text !== undefined) payload.text = p.payload.text;
          if (p.payload.chunk !== undefined) payload.chunk = p.payload.chunk;
          return { id: pointUuid(p.payload.userId, p.id), vector: Array.from(p.vector, Math.fround), payload };
        }),
      });
  }

  async query(collection: string, vector: ArrayLike<number>, opts: QueryOptions): Promise<ScoredPoint[]> {
    const info = await this.collection(collection);
    checkQuery(info, vector, opts);
    const res = await this.client.query(info.name, {
      query: Array.from(vector),
      limit: opts.topK,
      filter: { must: conditions(opts.filter) },
      params: { hnsw_ef: Math.max(this.efSearch, opts.topK) },
      with_payload: true,
    });
    return res.points.map((p) => {
      const pl = p.payload as unknown as QdrantPayload;
      return { id: pl.point_id, score: p.score, payload: payloadOf(pl) };
    });
  }

  async deleteBySource(userId: string, collection: string, source: string): Promise<number> {
    const info = await this.collection(collection);
    if (typeof userId !== "string" || !userId) throw new InvalidVectorInputError(`deleteBySource: userId is required`);
    if (typeof source !== "string" || !source) throw new InvalidVectorInputError(`deleteBySource: source is required`);
    const filter = { must: conditions({ userId, source }) };
    const { count } = await this.client.count(info.name, { filter, exact: true });
    if (count === 0) throw new UnknownDocumentError(userId, source);
    await this.client.delete(info.name, { wait: true, filter });
    return count;
  }

  async deletePoints(userId: string, collection: string, ids: readonly string[]): Promise<number> {
    const info = await this.collection(collection);
    checkIds(userId, ids);
    if (ids.length === 0) return 0;
    const uuids = [...new Set(ids)].map((id) => pointUuid(userId, id));
    // Qdrant's delete does not say how many it removed: those found first are the count.
    const found = await this.client.retrieve(info.name, { ids: uuids, with_payload: false, with_vector: false });
    if (found.length === 0) return 0;
    await this.client.delete(info.name, { wait: true, points: uuids });
    return found.length;
  }

  async listBySource(userId: string, collection: string, source: string, page: { limit?: number; after?: string } = {}): Promise<PointPage> {
    const info = await this.collection(collection);
    const limit = checkListing(userId, source, page);
    // Scroll pages by Qdrant's own point id: the cursor is the next page's first id, as Qdrant gives it.
    const res = await this.client.scroll(info.name, {
      filter: { must: conditions({ userId, source }) },
      limit,
      with_payload: true,
      with_vector: false,
      ...(page.after !== undefined ? { offset: page.after } : {}),
    });
    const points = res.points.map((p) => {
      const pl = p.payload as unknown as QdrantPayload;
      return { id: pl.point_id, payload: payloadOf(pl) };
    });
    const next = res.next_page_offset;
    return next === null || next === undefined ? { points } : { points, next: String(next) };
  }

  async count(collection: string, filter: Partial<VectorFilter> = {}): Promise<number> {
    const info = await this.collection(collection);
    checkFilter(`count on collection "${info.name}"`, filter);
    const must = conditions(filter);
    const { count } = await this.client.count(info.name, { exact: true, ...(must.length ? { filter: { must } } : {}) });
    return count;
  }

  async dropCollection(name: string): Promise<void> {
    const info = await this.collection(name);
    await this.client.delete(REGISTRY, { wait: true, points: [pointUuid(info.name)] });
    await this.client.deleteCollection(info.name);
    this.known.delete(info.name);
  }

  async close(): Promise<void> {
    // The REST client holds no connection of its own to release.
  }

  private async registered(name: string): Promise<CollectionInfo | undefined> {
    const found = await this.client.retrieve(REGISTRY, { ids: [pointUuid(name)], with_payload: true });
    const p = found[0]?.payload as { model?: string; dim?: number } | undefined;
    if (!p?.model || !p.dim) return undefined;
    // The registry may outlive a collection deleted by hand.
    const { exists } = await this.client.collectionExists(name);
    if (!exists) return undefined;
    return { name, model: p.model, dim: p.dim, distance: "cosine" };
  }

  private async createIfMissing(name: string, dim: number, keywordFields: readonly string[]): Promise<void> {
    const { exists } = await this.client.collectionExists(name);
    if (!exists) {
      try {
        await this.client.createCollection(name, { vectors: { size: dim, distance: "Cosine" } });
      } catch (err) {
        // Another process created it first: fine, it is the same collection.
        if (status(err) !== 409 && !(await this.client.collectionExists(name)).exists) throw err;
      }
    }
    for (const field of keywordFields)
      await this.client.createPayloadIndex(name, {
        wait: true,
        field_name: field,
        // user_id is the tenant key: Qdrant lays out each user's points together.
        field_schema: field === "user_id" ? { type: "keyword", is_tenant: true } : "keyword",
      });
  }
}
