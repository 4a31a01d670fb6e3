// Jota's long-term memory: the vector store (vector/), ingestion of
// documents into it (document-text.ts, ingest.ts), and retrieval for a turn (retrieve.ts).
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
export {
  BINARY_MEDIA_TYPES,
  DOCUMENT_MEDIA_TYPES,
  documentMediaType,
  ExtractError,
  extractText,
  isBinaryMediaType,
  looksLikePdf,
  mediaTypeOfName,
  type DocumentMediaType,
  type ExtractedText,
  type ExtractOptions,
} from "./document-text";
export { contextEntry, fitSources, RetrievalUnavailableError, UnavailableRetriever, VectorRetriever, type RetrievedSource, type Retriever, type RetrieverOptions } from "./retrieve";
