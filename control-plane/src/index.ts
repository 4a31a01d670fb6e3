// The control plane's public surface, used in-process by the gateway.
export { loadConfig, ConfigError, ENV_VARS, type Config, type GatewayConfig } from "./config/config";
export { repoRoot } from "./config/paths";
export { createLogger, silentLogger, type Logger } from "./log";
export { EngineProcess, EngineStartError, type EngineState } from "./engines/process";
export { localEngines, type LocalEngines } from "./engines/local";
export { checkHealth, type ServingStatus } from "./engines/health";
export { openDatabase, databaseOptions, type Database, type DatabaseOptions, type Backend } from "./db/database";
export { MigrationError } from "./db/migrate";
export { DataDirLockedError } from "./db/lock";
export {
  ConflictError,
  InvalidCursorError,
  InvalidTransitionError,
  MissingSecretError,
  NotFoundError,
  type Page,
  type PageRequest,
  type Repositories,
  type RouteDecisionRecord,
  type TurnOutcome,
} from "./db/repositories";
export { EnginePool, EngineUnavailableError, type EngineLease, type EngineStatus, type PoolOptions } from "./engines/pool";
export { EngineCallError, InferenceEngineClient, TranscriptionEngineClient, type EngineFailure } from "./engines/clients";
export { engineForConversation } from "./sessions/affinity";
export { IntentRouter, routerFromConfig, decisionRecord, type RouteDecision } from "./router/router";
export type { Route } from "./router/rules";
export {
  turn,
  type TurnDeps,
  type TurnSettled,
  type TurnInput,
  type TurnOptions,
  type TurnEvent,
  type TurnAcceptedEvent,
  type TurnStartedEvent,
  type TurnDeltaEvent,
  type TurnToolEvent,
  type TurnDoneEvent,
  type TurnErrorEvent,
  type TurnUsage,
  type TurnTimings,
} from "./sessions/turn";
export { buildPrompt, systemMessage, PromptTooLongError, DEFAULT_SYSTEM_PROMPT, type BuiltPrompt, type PromptInput } from "./sessions/prompt";
export { TurnRunner, TurnHandle, type TurnResult, type RunnerOptions } from "./sessions/runner";
export { ConversationLocks, ConversationBusyError } from "./sessions/locks";
export * from "./memory";
export { embedTexts, pickEmbeddingEngine, NoEmbeddingEngineError, type Embedded } from "./memory/embedder";
export { Memories, InvalidMemoryError, MemoryAddNotUndoneError, MAX_MEMORY_CHARS, MEMORY_KIND, memorySource, type ScoredMemory } from "./memory/memories";
export { applyOperations, extractMemories, parseOperations, EXTRACTION_SCHEMA, type ExtractionResult } from "./memory/extraction";
export { summarizeConversation, type SummaryResult } from "./memory/summaries";
export { INTERRUPTED, runUpkeep, type UpkeepOptions, type UpkeepResult } from "./memory/upkeep";
export { MemoryQueue, MEMORY_QUEUE, startMemoryWorker, dailyPattern, type MemoryQueueOptions, type MemoryWorker } from "./jobs";
export {
  openRedis,
  RedisError,
  IngestQueue,
  ingestJobId,
  documentStillWanted,
  documentTracker,
  startDocumentWorker,
  startIngestWorker,
  type RedisHandle,
  type IngestJobStatus,
  type IngestJobState,
  type IngestWorker,
} from "./jobs";
export { INGEST_QUEUE, type IngestOutcome, type IngestQueueOptions, type IngestWorkerOptions, type SubmitResult } from "./jobs";
