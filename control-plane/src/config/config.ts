// The one place that reads and validates Jota's environment. Everything else
// receives an immutable Config; a bad value fails at start-up with the name of
// the variable, never later in a request.
import path from "node:path";
import { defaultBuildDir, repoRoot, testModelsDir } from "./paths";

export interface EnvVarSpec {
  name: string;
  default: string;
  description: string;
}

/** Every environment variable Jota reads (the README's table is checked against this list). */
export const ENV_VARS: readonly EnvVarSpec[] = [
  { name: "JOTA_HOST", default: "127.0.0.1", description: "Address the gateway binds (0.0.0.0 to expose it)" },
  { name: "JOTA_HTTP_PORT", default: "8080", description: "HTTP / WebSocket port (0 picks a free one)" },
  { name: "JOTA_DATA_DIR", default: "./data", description: "Embedded database, engine KV state, logs" },
  { name: "JOTA_MODEL", default: "models/test/tiny-chat.gguf", description: "Chat model (GGUF) for the local inference engine" },
  { name: "JOTA_EMBED_MODEL", default: "models/test/tiny-embed.gguf", description: "Embedding model (GGUF); empty disables embeddings" },
  { name: "JOTA_WHISPER_MODEL", default: "models/test/tiny-whisper.bin", description: "Whisper model (ggml .bin); empty disables speech" },
  { name: "JOTA_INFERENCE_URLS", default: "", description: "Comma-separated host:port of running inference engines; empty = start one locally" },
  { name: "JOTA_TRANSCRIPTION_URLS", default: "", description: "Comma-separated host:port of running transcription engines; empty = start one locally" },
  { name: "JOTA_ENGINE_TOKEN", default: "(random per start)", description: "Bearer token between the control plane and the engines" },
  { name: "JOTA_ENGINE_STALL_MS", default: "300000", description: "A chat turn whose engine sends nothing for this long after starting it (stuck, or its host gone) is cancelled and fails TIMEOUT; 0 = no limit" },
  { name: "JOTA_INFERENCE_PORT", default: "50051", description: "Port of the locally started inference engine (0 picks a free one)" },
  { name: "JOTA_TRANSCRIPTION_PORT", default: "50052", description: "Port of the locally started transcription engine (0 picks a free one)" },
  { name: "JOTA_THREADS", default: "(all cores)", description: "CPU threads of each local engine" },
  { name: "JOTA_SLOTS", default: "4", description: "Concurrent sequences of the local inference engine" },
  { name: "JOTA_CTX_SIZE", default: "4096", description: "Context tokens per slot of the local inference engine" },
  { name: "JOTA_BUILD_DIR", default: "./build", description: "Where the engine binaries were built (CMake build folder)" },
  { name: "JOTA_LOG_LEVEL", default: "info", description: "debug | info | warn | error" },
  { name: "DATABASE_URL", default: "", description: "PostgreSQL URL (postgres://user:password@host:5432/db); empty = embedded PGlite in JOTA_DATA_DIR/db" },
  { name: "JOTA_PG_SHARED_BUFFERS", default: "auto", description: "Page cache of the embedded database (e.g. 512MB, at most 1536MB); auto: sized at start to the data on disk, 128MB to 1GB (control-plane/src/db/embedded.ts)" },
  { name: "JOTA_ROUTER_MODEL", default: "off", description: "on: ask the chat model (JSON-schema-constrained) to route turns that no rule matches; off: such turns are chat" },
  { name: "JOTA_GRPC_PORT", default: "50050", description: "Port of the edge-device gRPC service jota.v1.Assistant (0 picks a free one)" },
  { name: "JOTA_SECRET", default: "(generated, kept in JOTA_DATA_DIR/secret)", description: "Server secret: API keys and device tokens are stored as HMAC-SHA256 under it" },
  { name: "JOTA_SYNC_LIMIT_MS", default: "30000", description: "POST /api/v1/chat waits this long, then answers 202 PROCESSING and the turn runs on" },
  { name: "JOTA_MAX_BODY_BYTES", default: "1048576", description: "Largest JSON request body (413 beyond)" },
  { name: "JOTA_MAX_AUDIO_BYTES", default: "26214400", description: "Largest uploaded audio file (413 beyond)" },
  { name: "JOTA_RATE_LIMIT", default: "120", description: "Requests per minute per API key or device (token bucket; 429 with Retry-After beyond)" },
  { name: "JOTA_RATE_BURST", default: "30", description: "Token-bucket burst: requests a key may make at once" },
  { name: "JOTA_MAX_STREAMS", default: "8", description: "Concurrent streaming turns per API key or device" },
  { name: "JOTA_WS_MAX_FRAME_BYTES", default: "65536", description: "Largest WebSocket frame a client may send (the socket is closed with 1009 beyond)" },
  { name: "JOTA_OIDC_ISSUER", default: "", description: "OIDC issuer; with JOTA_OIDC_JWKS_URL, bearer JWTs from it are accepted (Keycloak-style)" },
  { name: "JOTA_OIDC_AUDIENCE", default: "", description: "Audience an OIDC token must carry" },
  { name: "JOTA_OIDC_JWKS_URL", default: "", description: "JWKS URL to verify OIDC tokens' signatures" },
  { name: "JOTA_ROUTER_RULES", default: "", description: "JSON file of extra intent-routing patterns (format: control-plane/src/router/rules.ts)" },
  { name: "REDIS_URL", default: "", description: "Redis for the job queues (redis://[:password@]host:6379[/db]); empty = a private redis-server in JOTA_DATA_DIR/redis" },
  { name: "JOTA_JOB_CONCURRENCY", default: "1", description: "Ingest jobs one worker runs at once" },
  { name: "QDRANT_URL", default: "", description: "Qdrant for semantic memory (http://host:6333); empty = pgvector in Jota's own database" },
  { name: "QDRANT_API_KEY", default: "", description: "Qdrant API key, when the server wants one" },
  { name: "JOTA_RETRIEVAL", default: "auto", description: "Memory and documents in the prompt: auto (turns routed needs_context) | always | off" },
  { name: "JOTA_MEMORY_EXTRACTION", default: "on", description: "After each completed turn, a background job reads the conversation for facts about the user to remember (on | off)" },
  { name: "JOTA_MEMORY_DELAY_MS", default: "5000", description: "How long memory extraction waits after a turn, so a burst of turns is read in one job" },
  { name: "JOTA_UPKEEP_AT", default: "03:00", description: "Time of day (HH:MM, server time zone) of the nightly upkeep job: memory deduplication, re-embedding, retention" },
  { name: "JOTA_RETENTION_DAYS", default: "90", description: "Finished request records older than this are deleted by the nightly upkeep (messages stay); 0 keeps them" },
];

export interface GatewayConfig {
  grpcPort: number;
  /** undefined: generated once and kept in dataDir/secret. */
  secret: string | undefined;
  syncLimitMs: number;
  maxBodyBytes: number;
  maxAudioBytes: number;
  rateLimitPerMin: number;
  rateBurst: number;
  maxStreamsPerKey: number;
  wsMaxFrameBytes: number;
  oidc: { issuer: string; audience: string; jwksUrl: string } | undefined;
}

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface LocalInferenceEngine {
  model: string;
  embedModel: string;
  port: number;
  threads: number | undefined;
  slots: number;
  ctxSize: number;
}

export interface Config {
  host: string;
  httpPort: number;
  dataDir: string;
  buildDir: string;
  logLevel: LogLevel;
  engineToken: string;
  engineTokenGenerated: boolean;
  /** JOTA_ENGINE_STALL_MS: longest silence of an engine within a turn (0: none). */
  engineStallMs: number;
  /** Engines started as children of this process (absent when URLs are given). */
  localInference: LocalInferenceEngine | undefined;
  localTranscription: { model: string; port: number; threads: number | undefined } | undefined;
  inferenceUrls: string[];
  transcriptionUrls: string[];
  /** True when any local engine runs on a generated random-weight test model. */
  usesTestModels: boolean;
  /** PostgreSQL; undefined means the embedded PGlite database in dataDir. */
  databaseUrl: string | undefined;
  /** JOTA_PG_SHARED_BUFFERS: the embedded database's shared_buffers in MB, or sized at open ("auto"). */
  pgSharedBuffers: SharedBuffersSetting;
  router: RouterConfig;
  gateway: GatewayConfig;
  jobs: JobsConfig;
  memory: MemoryConfig;
}

export interface MemoryConfig {
  /** QDRANT_URL; undefined means pgvector in Jota's own database. */
  qdrantUrl: string | undefined;
  qdrantApiKey: string | undefined;
  /** Which turns retrieve: those routed needs_context, all, or none. */
  retrieval: "auto" | "always" | "off";
  /** Memory extraction after completed turns. */
  extraction: boolean;
  extractionDelayMs: number;
  /** "HH:MM" of the nightly upkeep. */
  upkeepAt: string;
  /** Days finished requests are kept; 0 = forever. */
  retentionDays: number;
}

export interface JobsConfig {
  /** REDIS_URL; undefined means a private redis-server in dataDir/redis. */
  redisUrl: string | undefined;
  /** Ingest jobs one worker runs at once. */
  concurrency: number;
}

export interface RouterConfig {
  /** Ask the model when no rule decides. */
  model: boolean;
  /** Extra patterns, loaded and validated by the router at start-up. */
  rulesFile: string | undefined;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

function str(env: Env, name: string, def: string): string {
  const v = env[name];
  return v === undefined ? def : v.trim();
}

function int(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return def;
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(name, `'${raw}' is not an integer`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `${n} is outside [${min}, ${max}]`);
  return n;
}

function optionalInt(env: Env, name: string, min: number, max: number): number | undefined {
  const raw = env[name];
  return raw === undefined || raw.trim() === "" ? undefined : int(env, name, 0, min, max);
}

function urls(env: Env, name: string): string[] {
  const list = str(env, name, "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const u of list)
    if (!/^[A-Za-z0-9_.\-[\]:]+:\d{1,5}$/.test(u)) throw new ConfigError(name, `'${u}' is not host:port`);
  return list;
}

function onOff(env: Env, name: string, def: "on" | "off"): boolean {
  const v = str(env, name, def).toLowerCase();
  if (v !== "on" && v !== "off") throw new ConfigError(name, `'${v}' is not on or off`);
  return v === "on";
}

function redisUrl(env: Env): string | undefined {
  const url = str(env, "REDIS_URL", "");
  if (url === "") return undefined;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError("REDIS_URL", "is not a URL (redis://[:password@]host:6379[/db])");
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw new ConfigError("REDIS_URL", "is not a redis:// or rediss:// URL");
  if (u.hostname === "") throw new ConfigError("REDIS_URL", "has no host");
  return url;
}

function httpUrl(env: Env, name: string): string | undefined {
  const url = str(env, name, "");
  if (url === "") return undefined;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(name, "is not a URL (http://host:6333)");
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new ConfigError(name, "is not an http:// or https:// URL");
  return url;
}

function retrievalMode(env: Env): MemoryConfig["retrieval"] {
  const v = str(env, "JOTA_RETRIEVAL", "auto");
  if (v !== "auto" && v !== "always" && v !== "off") throw new ConfigError("JOTA_RETRIEVAL", `'${v}' is not one of auto, always, off`);
  return v;
}

function timeOfDay(env: Env, name: string, def: string): string {
  const v = str(env, name, def).trim();
  if (!/^([01]?\d|2[0-3]):[0-5]\d$/.test(v)) throw new ConfigError(name, `'${v}' is not a time of day (HH:MM, 24-hour)`);
  return v;
}

/** "auto", or megabytes. */
export type SharedBuffersSetting = "auto" | number;

function sharedBuffers(env: Env): SharedBuffersSetting {
  const v = str(env, "JOTA_PG_SHARED_BUFFERS", "auto");
  if (v === "auto") return v;
  const m = /^(\d+)\s*(MB|GB)$/i.exec(v);
  if (!m) throw new ConfigError("JOTA_PG_SHARED_BUFFERS", `'${v}' is not auto or a size like 512MB or 1GB`);
  const mb = Number(m[1]) * (m[2]!.toUpperCase() === "GB" ? 1024 : 1);
  // PGlite's WebAssembly memory holds the cache and everything else: 2GB did not start.
  if (mb < 16 || mb > 1536) throw new ConfigError("JOTA_PG_SHARED_BUFFERS", `${mb}MB is outside [16MB, 1536MB]`);
  return mb;
}

function databaseUrl(env: Env): string | undefined {
  const url = str(env, "DATABASE_URL", "");
  if (url === "") return undefined;
  if (!/^postgres(ql)?:\/\//.test(url)) throw new ConfigError("DATABASE_URL", "is not a postgres:// or postgresql:// URL");
  return url;
}

/** Paths in the environment are relative to the repository root, like the README's examples. */
function resolvePath(p: string): string {
  return p === "" ? "" : path.resolve(repoRoot, p);
}

export function loadConfig(env: Env = process.env, randomToken: () => string = defaultToken): Config {
  const logLevel = str(env, "JOTA_LOG_LEVEL", "info");
  if (!["debug", "info", "warn", "error"].includes(logLevel))
    throw new ConfigError("JOTA_LOG_LEVEL", `'${logLevel}' is not one of debug, info, warn, error`);
  const inferenceUrls = urls(env, "JOTA_INFERENCE_URLS");
  const transcriptionUrls = urls(env, "JOTA_TRANSCRIPTION_URLS");
  const threads = optionalInt(env, "JOTA_THREADS", 1, 1024);
  const model = resolvePath(str(env, "JOTA_MODEL", "models/test/tiny-chat.gguf"));
  const embedModel = resolvePath(str(env, "JOTA_EMBED_MODEL", "models/test/tiny-embed.gguf"));
  const whisperModel = resolvePath(str(env, "JOTA_WHISPER_MODEL", "models/test/tiny-whisper.bin"));
  if (inferenceUrls.length === 0 && model === "" && embedModel === "")
    throw new ConfigError("JOTA_MODEL", "no chat or embedding model, and no JOTA_INFERENCE_URLS to use instead");

  const localInference =
    inferenceUrls.length > 0
      ? undefined
      : {
          model,
          embedModel,
          port: int(env, "JOTA_INFERENCE_PORT", 50051, 0, 65535),
          threads,
          slots: int(env, "JOTA_SLOTS", 4, 1, 256),
          ctxSize: int(env, "JOTA_CTX_SIZE", 4096, 0, 1 << 20),
        };
  const localTranscription =
    transcriptionUrls.length > 0 || whisperModel === ""
      ? undefined
      : { model: whisperModel, port: int(env, "JOTA_TRANSCRIPTION_PORT", 50052, 0, 65535), threads };

  const localModels = [localInference?.model, localInference?.embedModel, localTranscription?.model];
  const token = str(env, "JOTA_ENGINE_TOKEN", "");
  return Object.freeze({
    host: str(env, "JOTA_HOST", "127.0.0.1"),
    httpPort: int(env, "JOTA_HTTP_PORT", 8080, 0, 65535),
    dataDir: dataDir(env),
    buildDir: resolvePath(str(env, "JOTA_BUILD_DIR", "")) || defaultBuildDir,
    logLevel: logLevel as LogLevel,
    engineToken: token || randomToken(),
    engineTokenGenerated: token === "",
    engineStallMs: int(env, "JOTA_ENGINE_STALL_MS", 300_000, 0, 86_400_000),
    localInference,
    localTranscription,
    inferenceUrls,
    transcriptionUrls,
    usesTestModels: localModels.some((m) => !!m && path.dirname(m) === testModelsDir),
    databaseUrl: databaseUrl(env),
    pgSharedBuffers: sharedBuffers(env),
    gateway: Object.freeze(gatewayConfig(env)),
    router: Object.freeze({
      model: onOff(env, "JOTA_ROUTER_MODEL", "off"),
      rulesFile: resolvePath(str(env, "JOTA_ROUTER_RULES", "")) || undefined,
    }),
    memory: Object.freeze({
      qdrantUrl: httpUrl(env, "QDRANT_URL"),
      qdrantApiKey: str(env, "QDRANT_API_KEY", "") || undefined,
      retrieval: retrievalMode(env),
      extraction: onOff(env, "JOTA_MEMORY_EXTRACTION", "on"),
      extractionDelayMs: int(env, "JOTA_MEMORY_DELAY_MS", 5000, 0, 86_400_000),
      upkeepAt: timeOfDay(env, "JOTA_UPKEEP_AT", "03:00"),
      retentionDays: int(env, "JOTA_RETENTION_DAYS", 90, 0, 36_500),
    }),
    jobs: Object.freeze({
      redisUrl: redisUrl(env),
      concurrency: int(env, "JOTA_JOB_CONCURRENCY", 1, 1, 1024),
    }),
  });
}

function dataDir(env: Env): string {
  const d = str(env, "JOTA_DATA_DIR", "./data");
  if (d === "") throw new ConfigError("JOTA_DATA_DIR", "is empty: name a folder (default ./data)");
  return resolvePath(d);
}

function gatewayConfig(env: Env): GatewayConfig {
  const secret = str(env, "JOTA_SECRET", "");
  if (secret !== "" && secret.length < 16) throw new ConfigError("JOTA_SECRET", "is shorter than 16 characters");
  const issuer = str(env, "JOTA_OIDC_ISSUER", "");
  const audience = str(env, "JOTA_OIDC_AUDIENCE", "");
  const jwksUrl = str(env, "JOTA_OIDC_JWKS_URL", "");
  if ((issuer === "") !== (jwksUrl === ""))
    throw new ConfigError(issuer === "" ? "JOTA_OIDC_ISSUER" : "JOTA_OIDC_JWKS_URL", "OIDC needs both JOTA_OIDC_ISSUER and JOTA_OIDC_JWKS_URL");
  if (jwksUrl !== "" && !/^https?:\/\//.test(jwksUrl)) throw new ConfigError("JOTA_OIDC_JWKS_URL", "is not an http(s) URL");
  return {
    grpcPort: int(env, "JOTA_GRPC_PORT", 50050, 0, 65535),
    secret: secret || undefined,
    syncLimitMs: int(env, "JOTA_SYNC_LIMIT_MS", 30_000, 0, 3_600_000),
    maxBodyBytes: int(env, "JOTA_MAX_BODY_BYTES", 1 << 20, 1024, 1 << 30),
    maxAudioBytes: int(env, "JOTA_MAX_AUDIO_BYTES", 25 << 20, 1024, 2 ** 31),
    rateLimitPerMin: int(env, "JOTA_RATE_LIMIT", 120, 1, 1_000_000),
    rateBurst: int(env, "JOTA_RATE_BURST", 30, 1, 1_000_000),
    maxStreamsPerKey: int(env, "JOTA_MAX_STREAMS", 8, 1, 100_000),
    wsMaxFrameBytes: int(env, "JOTA_WS_MAX_FRAME_BYTES", 64 << 10, 1024, 64 << 20),
    oidc: issuer ? { issuer, audience, jwksUrl } : undefined,
  };
}

function defaultToken(): string {
  return crypto.randomUUID().replaceAll("-", "");
}
