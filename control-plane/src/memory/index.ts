// Jota's long-term memory: the vector store (vector/) and ingestion of
// documents into it (ingest.ts).
export * from "./vector";
export {
  chunkText,
  ingestDocument,
  IngestError,
  type Chunk,
  type EmbeddingEngine,
  type IngestDocument,
  type IngestOptions,
  type IngestProgress,
  type IngestResult,
  type TokenCounter,
} from "./ingest";
