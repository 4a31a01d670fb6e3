// Which vector store Jota uses: Qdrant when QDRANT_URL is set, otherwise
// pgvector in Jota's own database (embedded PGlite or DATABASE_URL).
import type { Logger } from "../../log";
import { PgVectorStore, type PgVectorOptions } from "./pgvector";
import { QdrantVectorStore } from "./qdrant";
import type { SqlLocation } from "./sql";
import type { VectorStore } from "./store";

export * from "./store";
export { PgVectorStore, PgvectorUnavailableError, vectorText, type PgVectorOptions, type PgVectorOpenOptions } from "./pgvector";
export { QdrantVectorStore, pointUuid, type QdrantOptions } from "./qdrant";
export type { SqlLocation } from "./sql";

export interface VectorStoreSettings {
  /** Where Jota's database is (as openDatabase takes it): pgvector's home. */
  database: SqlLocation;
  /** QDRANT_URL; empty or absent means pgvector. */
  qdrantUrl?: string;
  qdrantApiKey?: string;
  logger?: Logger;
  pgvector?: PgVectorOptions;
}

export async function openVectorStore(s: VectorStoreSettings): Promise<VectorStore> {
  if (s.qdrantUrl) return QdrantVectorStore.open({ url: s.qdrantUrl, apiKey: s.qdrantApiKey });
  return PgVectorStore.open(s.database, { ...s.pgvector, logger: s.logger });
}
