// Background jobs on Redis (BullMQ): the connection or private server
// (redis.ts), the ingest queue (queues.ts) and its worker (worker.ts).
export { openRedis, redactRedisUrl, RedisError, type OpenRedisOptions, type PrivateRedis, type RedisHandle } from "./redis";
export {
  IngestQueue,
  INGEST_QUEUE,
  ingestJobId,
  type IngestJob,
  type IngestJobState,
  type IngestJobStatus,
  type IngestQueueOptions,
  type SubmitResult,
} from "./queues";
export { startIngestWorker, type IngestOutcome, type IngestWorker, type IngestWorkerOptions } from "./worker";
export { documentStillWanted, documentTracker, startDocumentWorker } from "./documents";
export { MemoryQueue, MEMORY_QUEUE, startMemoryWorker, dailyPattern, type MemoryJobName, type MemoryQueueOptions, type MemoryWorker, type MemoryWorkerOptions } from "./memory";
