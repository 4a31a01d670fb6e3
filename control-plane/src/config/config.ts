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
  { name: "JOTA_INFERENCE_PORT", default: "50051", description: "Port of the locally started inference engine (0 picks a free one)" },
  { name: "JOTA_TRANSCRIPTION_PORT", default: "50052", description: "Port of the locally started transcription engine (0 picks a free one)" },
  { name: "JOTA_THREADS", default: "(all cores)", description: "CPU threads of each local engine" },
  { name: "JOTA_SLOTS", default: "4", description: "Concurrent sequences of the local inference engine" },
  { name: "JOTA_CTX_SIZE", default: "4096", description: "Context tokens per slot of the local inference engine" },
  { name: "JOTA_BUILD_DIR", default: "./build", description: "Where the engine binaries were built (CMake build folder)" },
  { name: "JOTA_LOG_LEVEL", default: "info", description: "debug | info | warn | error" },
  { name: "DATABASE_URL", default: "", description: "PostgreSQL URL (postgres://user:password@host:5432/db); empty = embedded PGlite in JOTA_DATA_DIR/db" },
  { name: "JOTA_ROUTER_MODEL", default: "off", description: "on: ask the chat model (JSON-schema-constrained) to route turns that no rule matches; off: such turns are chat" },
  { name: "JOTA_ROUTER_RULES", default: "", description: "JSON file of extra intent-routing patterns (format: control-plane/src/router/rules.ts)" },
];

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
  /** Engines started as children of this process (absent when URLs are given). */
  localInference: LocalInferenceEngine | undefined;
  localTranscription: { model: string; port: number; threads: number | undefined } | undefined;
  inferenceUrls: string[];
  transcriptionUrls: string[];
  /** True when any local engine runs on a generated random-weight test model. */
  usesTestModels: boolean;
  /** PostgreSQL; undefined means the embedded PGlite database in dataDir. */
  databaseUrl: string | undefined;
  router: RouterConfig;
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
    dataDir: resolvePath(str(env, "JOTA_DATA_DIR", "./data")),
    buildDir: resolvePath(str(env, "JOTA_BUILD_DIR", "")) || defaultBuildDir,
    logLevel: logLevel as LogLevel,
    engineToken: token || randomToken(),
    engineTokenGenerated: token === "",
    localInference,
    localTranscription,
    inferenceUrls,
    transcriptionUrls,
    usesTestModels: localModels.some((m) => !!m && path.dirname(m) === testModelsDir),
    databaseUrl: databaseUrl(env),
    router: Object.freeze({
      model: onOff(env, "JOTA_ROUTER_MODEL", "off"),
      rulesFile: resolvePath(str(env, "JOTA_ROUTER_RULES", "")) || undefined,
    }),
  });
}

function defaultToken(): string {
  return crypto.randomUUID().replaceAll("-", "");
}
