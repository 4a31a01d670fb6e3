// Retrieval for a chat turn: the user's message, embedded by an inference
// engine's embedding model, against the user's memories and document chunks
// in the vector store (the collection of that model and dimension); the best
// ones that fit a token budget go into the prompt, and come back with the
// reply as its sources.
//
// A memory's point is only a pointer to its row (memories.ts): it counts while
// its row still exists, is the user's and claims a vector in the queried
// collection, and what the turn gets is the row's text, never the payload's
// copy. A vector left behind by a write that failed half-way, or by a delete
// that raced one, can then never bring back text the user erased or corrected.
//
// A document chunk is kept the same way, by its row (documents): an upload's
// chunks carry their ingest job in their id (memory/ingest.ts), and the row
// names the job whose chunks are current. A chunk of another job (an older
// upload's job that ended late, in another process, after the newer one) is
// left out: it would otherwise answer with the replaced text while the
// document shows the newer version. Chunks without a job (written before
// versions existed, or by an ingestion that no upload made) count while no
// row names a job for their source.
//
// Retrieval never fails a turn: when it cannot be done (the vector store is
// down, no engine has an embedding model) the turn answers without context
// and records why (RetrievalUnavailableError -> VECTOR_STORE_UNAVAILABLE on
// the request).
import { status } from "@grpc/grpc-js";
import { EngineCallError, type InferenceEngineClient } from "../engines/clients";
import type { EnginePool } from "../engines/pool";
import type { DocumentRepository } from "../db/repositories/documents";
import type { MemoryRepository } from "../db/repositories/memories";
import { MEMORY_KIND, memorySource } from "./memories";
import { chunkVersion, collectionName, UnknownCollectionError, type ScoredPoint, type VectorStore } from "./vector/store";

/** A retrieved chunk as the reply cites it. */
export interface RetrievedSource {
  /** The point's id in the store (document chunks: "<source>#<chunk>", and an upload's "<source>#<chunk>@<job>"). */
  id: string;
  source: string;
  kind: string;
  title?: string;
  chunk?: number;
  text: string;
  /** Cosine similarity to the user's message. */
  score: number;
}

export interface Retriever {
  /** The user's best matches for `query`, best first; RetrievalUnavailableError when retrieval cannot be done. */
  retrieve(userId: string, query: string, opts?: { signal?: AbortSignal; requestId?: string }): Promise<RetrievedSource[]>;
}

export class RetrievalUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RetrievalUnavailableError";
  }
}

export interface RetrieverOptions {
  /** Candidates fetched from the store (default 5). */
  topK?: number;
  /** Matches scoring below this are left out (default 0: cosine similarity above orthogonal). */
  minScore?: number;
  /**
   * The memory rows, to check each memory point against (see the file's
   * comment): a point left behind by a failed write, or an outdated one, is
   * never taken at its payload's word.
   */
  memories: Pick<MemoryRepository, "byIds">;
  /**
   * The document rows, to check each document chunk against (see the file's
   * comment). Without them chunks are taken at their payload's word.
   */
  documents?: Pick<DocumentRepository, "chunksVersions">;
}

/** Retrieval over the vector store, with query embeddings from the pool's engines. */
export class VectorRetriever implements Retriever {
  constructor(
    private readonly store: VectorStore,
    private readonly pool: EnginePool,
    private readonly opts: RetrieverOptions,
  ) {}

  async retrieve(userId: string, query: string, o: { signal?: AbortSignal; requestId?: string } = {}): Promise<RetrievedSource[]> {
    const lease = this.pool.pickInference();
    let embedded: { model: string; dimensions: number; values: number[] };
    try {
      const res = await lease.client.embed({ inputs: [query], normalize: true, requestId: o.requestId ?? "" });
      lease.release();
      const values = res.embeddings[0]?.values;
      if (!values) throw new Error("the engine returned no embedding");
      embedded = { model: res.model, dimensions: res.dimensions, values };
    } catch (err) {
      lease.release(err);
      // No embedding model on the engines: nothing can have been stored either, so there is nothing to find.
      if (err instanceof EngineCallError && err.code === status.FAILED_PRECONDITION) return [];
      throw new RetrievalUnavailableError(`could not embed the message on ${lease.address}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
    o.signal?.throwIfAborted();
    const collection = collectionName(embedded.model, embedded.dimensions);
    let points;
    try {
      points = await this.store.query(collection, embedded.values, {
        topK: this.opts.topK ?? 5,
        filter: { userId },
      });
    } catch (err) {
      if (err instanceof UnknownCollectionError) return []; // nothing was ever stored for this model: nothing to find
      throw new RetrievalUnavailableError(`the ${this.store.kind} vector store could not be queried: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
    const minScore = this.opts.minScore ?? 0;
    const kept = points.filter((p) => p.score > minScore);
    const [texts, current] = await Promise.all([this.memoryTexts(userId, collection, kept), this.currentChunks(userId, kept)]);
    return kept.flatMap((p) => {
      const text = p.payload.kind === MEMORY_KIND ? texts.get(p.id) : current(p) ? p.payload.text : undefined;
      if (!text) return [];
      return [
        {
          id: p.id,
          source: p.payload.source,
          kind: p.payload.kind,
          ...(p.payload.title !== undefined ? { title: p.payload.title } : {}),
          ...(p.payload.chunk !== undefined ? { chunk: p.payload.chunk } : {}),
          text,
          score: p.score,
        },
      ];
    });
  }

  /** Whether a document chunk is of the version its row names (see the file's comment). */
  private async currentChunks(userId: string, points: ScoredPoint[]): Promise<(p: ScoredPoint) => boolean> {
    const docs = this.opts.documents;
    const sources = points.filter((p) => p.payload.kind !== MEMORY_KIND).map((p) => p.payload.source);
    if (!docs || sources.length === 0) return () => true;
    let versions: Map<string, string | null>;
    try {
      versions = await docs.chunksVersions(userId, sources);
    } catch (err) {
      throw new RetrievalUnavailableError(`the documents could not be read: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
    // A chunk of no version counts while its row names none.
    return (p) => chunkVersion(p) === (versions.get(p.payload.source) ?? undefined);
  }

  /** The current text of each memory point whose row claims its vector in `collection` (by point id). */
  private async memoryTexts(userId: string, collection: string, points: ScoredPoint[]): Promise<Map<string, string>> {
    const ids = points.filter((p) => p.payload.kind === MEMORY_KIND && p.payload.source === memorySource(p.id)).map((p) => p.id);
    if (ids.length === 0) return new Map();
    let rows;
    try {
      rows = await this.opts.memories.byIds(userId, ids);
    } catch (err) {
      throw new RetrievalUnavailableError(`the memories could not be read: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
    // A row that is mid-write (embeddingModel null) or names another collection does not vouch for this vector.
    return new Map(rows.filter((r) => r.embeddingModel !== null && r.collection === collection).map((r) => [r.id, r.text]));
  }
}

/** Retrieval when the vector store could not be opened: every turn that wants it is told why. */
export class UnavailableRetriever implements Retriever {
  constructor(private readonly why: string) {}
  retrieve(): Promise<RetrievedSource[]> {
    return Promise.reject(new RetrievalUnavailableError(this.why));
  }
}

/** How a source reads in the prompt: numbered, so the model can cite it. */
export function contextEntry(s: RetrievedSource, n: number): string {
  const title = s.title ? `${s.title} (${s.source})` : s.source;
  return `[${n}] ${title}:\n${s.text.trim()}`;
}

/**
 * The sources that fit `budget` tokens of the chat engine, best first: each
 * counted exactly (CountTokens, in parallel) as the prompt will carry it.
 */
export async function fitSources(engine: InferenceEngineClient, sources: RetrievedSource[], budget: number): Promise<RetrievedSource[]> {
  const costs = await Promise.all(
    sources.map(async (s, i) => (await engine.countTokens({ messages: [{ role: "system", content: contextEntry(s, i + 1) }], chatTemplate: "", noGenerationPrompt: true })).tokens),
  );
  const kept: RetrievedSource[] = [];
  let used = 0;
  for (const [i, s] of sources.entries()) {
    if (used + costs[i]! > budget) continue;
    used += costs[i]!;
    kept.push(s);
  }
  return kept;
}
