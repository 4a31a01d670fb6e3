// Embeddings for memory: an inference engine of the pool that has an
// embedding model, and one Embed call through it. Ingestion, memories and
// upkeep all embed this way (retrieval embeds the turn's message on the
// turn's own engine pick: retrieve.ts).
import type { InferenceEngineClient } from "../engines/clients";
import { EngineUnavailableError, type EngineLease, type EnginePool } from "../engines/pool";
import { collectionName } from "./vector/store";

/** No inference engine in the pool can embed. Retried like any engine trouble: one may come. */
export class NoEmbeddingEngineError extends Error {
  constructor(engines: string[]) {
    super(
      `no inference engine with an embedding model (${engines.join(", ")} ${engines.length === 1 ? "has" : "have"} none; ` +
        `start one with JOTA_EMBED_MODEL / --embed-model)`,
    );
    this.name = "NoEmbeddingEngineError";
  }
}

/** A healthy inference engine that reports an embedding model, leased. */
export async function pickEmbeddingEngine(pool: EnginePool): Promise<EngineLease<InferenceEngineClient>> {
  const without: string[] = [];
  const exclude = new Set<string>();
  for (;;) {
    let lease: EngineLease<InferenceEngineClient>;
    try {
      lease = pool.pickInference({ exclude });
    } catch (err) {
      if (err instanceof EngineUnavailableError && without.length > 0) throw new NoEmbeddingEngineError(without);
      throw err;
    }
    try {
      if ((await lease.client.info()).embeddingModel) return lease;
      without.push(lease.address);
      lease.release();
    } catch (err) {
      lease.release(err);
    }
    exclude.add(lease.address);
  }
}

export interface Embedded {
  model: string;
  dimensions: number;
  /** The vector store collection for this model and dimension. */
  collection: string;
  /** L2-normalised, one per input, in order. */
  vectors: number[][];
}

/** Embeds `texts` (one Embed call) on an engine of the pool that can. */
export async function embedTexts(pool: EnginePool, texts: string[], requestId = ""): Promise<Embedded> {
  const lease = await pickEmbeddingEngine(pool);
  let res;
  try {
    res = await lease.client.embed({ inputs: texts, normalize: true, requestId });
  } catch (err) {
    lease.release(err);
    throw err;
  }
  lease.release();
  if (res.embeddings.length !== texts.length) throw new Error(`engine ${lease.address} returned ${res.embeddings.length} embeddings for ${texts.length} inputs`);
  return { model: res.model, dimensions: res.dimensions, collection: collectionName(res.model, res.dimensions), vectors: res.embeddings.map((e) => e.values) };
}
