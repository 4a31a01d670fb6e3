// Structured JSON logs, one object per line on stderr (the engines write the
// same shape, so a supervisor can forward their lines unchanged).
import type { LogLevel } from "./config/config";

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
  /** Writes an already-structured line (from an engine) with extra fields. */
  raw(line: Record<string, unknown>): void;
}

export function createLogger(
  level: LogLevel = "info",
  base: LogFields = {},
  write: (line: string) => void = (l) => process.stderr.write(l),
): Logger {
  const min = ORDER[level];
  const emit = (lvl: LogLevel, msg: string, fields?: LogFields) => {
    if (ORDER[lvl] < min) return;
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, ...base, msg, ...fields }) + "\n");
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger(level, { ...base, ...fields }, write),
    raw: (line) => {
      const lvl = (typeof line.level === "string" && line.level in ORDER ? line.level : "info") as LogLevel;
      if (ORDER[lvl] < min) return;
      write(JSON.stringify({ ...base, ...line }) + "\n"); // the engine's own fields win
    },
  };
}

/** A logger that drops everything (tests that assert on behaviour, not logs). */
export const silentLogger: Logger = createLogger("error", {}, () => {});
