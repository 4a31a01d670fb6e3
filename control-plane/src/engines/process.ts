// Runs an engine binary as a child process and keeps it alive: waits until
// its health says SERVING, restarts it with exponential backoff when it dies,
// and stops it (SIGTERM, then SIGKILL after a grace period) without leaving
// orphans. Engines are also started with --exit-with-parent, so the kernel
// ends them even if this process is killed with SIGKILL.
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { createInterface } from "node:readline";
import { checkHealth } from "./health";
import type { Logger } from "../log";

export type EngineState = "idle" | "starting" | "ready" | "backoff" | "stopping" | "stopped" | "failed";

export interface EngineProcessOptions {
  name: string;
  binary: string;
  args: string[];
  /** The grpc.health.v1 service name the engine reports (e.g. "jota.v1.Inference"). */
  healthService: string;
  env?: Record<string, string>;
  logger: Logger;
  /** How long one start may take until SERVING (model load included). */
  startTimeoutMs?: number;
  /** Restart after an unexpected exit (the watchdog). */
  restart?: boolean;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  stopGraceMs?: number;
}

export class EngineStartError extends Error {
  constructor(
    readonly engine: string,
    message: string,
  ) {
    super(`${engine}: ${message}`);
    this.name = "EngineStartError";
  }
}

/** Events: "ready" (address), "exit" ({code, signal, expected}), "state" (EngineState). */
export class EngineProcess extends EventEmitter {
  private child: ChildProcess | undefined;
  private _state: EngineState = "idle";
  private _address: string | undefined;
  private restarts = 0;
  private backoffTimer: NodeJS.Timeout | undefined;
  private lastError = "";
  private readonly opts: Required<Omit<EngineProcessOptions, "env">> & { env: Record<string, string> };

  constructor(options: EngineProcessOptions) {
    super();
    this.opts = {
      env: {},
      startTimeoutMs: 120_000,
      restart: true,
      backoffInitialMs: 500,
      backoffMaxMs: 30_000,
      stopGraceMs: 10_000,
      ...options,
    };
  }

  get state(): EngineState {
    return this._state;
  }
  /** host:port once the engine has said where it listens. */
  get address(): string | undefined {
    return this._address;
  }
  get pid(): number | undefined {
    return this.child?.pid;
  }
  get restartCount(): number {
    return this.restarts;
  }

  /** Starts the engine and resolves once it is SERVING. */
  async start(): Promise<string> {
    if (this._state !== "idle" && this._state !== "stopped" && this._state !== "failed")
      throw new Error(`${this.opts.name} is already ${this._state}`);
    return this.launch();
  }

  private setState(s: EngineState) {
    this._state = s;
    this.emit("state", s);
  }

  private launch(): Promise<string> {
    const { name, binary, args, logger } = this.opts;
    this.setState("starting");
    this._address = undefined;
    this.lastError = "";
    const child = spawn(binary, [...args, "--exit-with-parent"], {
      env: { ...process.env, ...this.opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    const startedAt = Date.now();

    return new Promise<string>((resolve, reject) => {
      let settled = false;
      const fail = (msg: string) => {
        if (settled) return;
        settled = true;
        reject(new EngineStartError(name, msg));
      };
      child.once("error", (err) => {
        this.setState("failed");
        fail(`cannot run ${binary}: ${err.message}`);
      });

      const onLine = (line: string, stream: "stdout" | "stderr") => {
        let parsed: Record<string, unknown> | undefined;
        try {
          const v = JSON.parse(line);
          if (v && typeof v === "object") parsed = v;
        } catch {
          /* plain text */
        }
        if (parsed) {
          logger.raw({ ...parsed, engine: name, pid: child.pid });
          if (parsed.level === "error" && typeof parsed.msg === "string") this.lastError = parsed.msg;
          if (parsed.msg === "listening" && typeof parsed.port === "string" && !this._address) {
            this._address = `127.0.0.1:${parsed.port}`;
            void this.waitServing(child, startedAt).then(
              (ok) => {
                if (!ok) return; // exit or timeout handled elsewhere
                this.setState("ready");
                this.emit("ready", this._address);
                if (!settled) {
                  settled = true;
                  resolve(this._address!);
                }
              },
              () => {},
            );
          }
        } else if (line.trim()) {
          logger.info(line, { engine: name, pid: child.pid, stream });
          if (stream === "stderr") this.lastError = line;
        }
      };
      createInterface({ input: child.stdout! }).on("line", (l) => onLine(l, "stdout"));
      createInterface({ input: child.stderr! }).on("line", (l) => onLine(l, "stderr"));

      const timer = setTimeout(() => {
        if (settled) return;
        logger.error("engine did not become ready in time; stopping it", { engine: name, timeoutMs: this.opts.startTimeoutMs });
        fail(`not SERVING after ${this.opts.startTimeoutMs} ms`);
        child.kill("SIGKILL");
      }, this.opts.startTimeoutMs);
      timer.unref();

      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        const expected = this._state === "stopping";
        this.emit("exit", { code, signal, expected });
        if (this.child === child) this.child = undefined;
        if (expected) {
          this.setState("stopped");
          return;
        }
        const why = `exited (${signal ?? `code ${code}`})${this.lastError ? `: ${this.lastError}` : ""}`;
        if (!settled) {
          // A crash during start-up is a configuration problem: report, don't loop.
          this.setState("failed");
          fail(why);
          return;
        }
        logger.error("engine died", { engine: name, code, signal, lastError: this.lastError });
        if (this.opts.restart) this.scheduleRestart();
        else this.setState("failed");
      });
    });
  }

  private async waitServing(child: ChildProcess, startedAt: number): Promise<boolean> {
    while (this.child === child && child.exitCode === null && Date.now() - startedAt < this.opts.startTimeoutMs) {
      const st = await checkHealth(this._address!, this.opts.healthService, 1000);
      if (st === "SERVING") return this.child === child;
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  }

  private scheduleRestart() {
    const n = this.restarts++;
    const base = Math.min(this.opts.backoffMaxMs, this.opts.backoffInitialMs * 2 ** n);
    const delay = Math.round(base / 2 + Math.random() * (base / 2)); // "equal jitter"
    this.setState("backoff");
    this.opts.logger.warn("restarting engine", { engine: this.opts.name, inMs: delay, attempt: n + 1 });
    this.backoffTimer = setTimeout(() => {
      this.backoffTimer = undefined;
      this.launch().catch((err: Error) => {
        this.opts.logger.error("engine restart failed", { engine: this.opts.name, error: err.message });
        if (this.opts.restart && this._state === "failed") this.scheduleRestart();
      });
    }, delay);
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves once the process is gone. */
  async stop(): Promise<void> {
    if (this.backoffTimer) clearTimeout(this.backoffTimer);
    this.backoffTimer = undefined;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      this.setState("stopped");
      return;
    }
    this.setState("stopping");
    const gone = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGTERM");
    const kill = setTimeout(() => child.kill("SIGKILL"), this.opts.stopGraceMs);
    await gone;
    clearTimeout(kill);
  }
}
