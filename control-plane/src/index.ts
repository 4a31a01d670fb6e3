// The control plane's public surface, used in-process by the gateway.
export { loadConfig, ConfigError, ENV_VARS, type Config } from "./config/config";
export { repoRoot } from "./config/paths";
export { createLogger, silentLogger, type Logger } from "./log";
export { EngineProcess, EngineStartError, type EngineState } from "./engines/process";
export { localEngines, type LocalEngines } from "./engines/local";
export { checkHealth, type ServingStatus } from "./engines/health";
