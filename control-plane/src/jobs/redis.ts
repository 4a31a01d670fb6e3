// The Redis behind Jota's job queues (BullMQ), in one of two ways:
// - REDIS_URL: a Redis someone runs (docker-compose's `redis` service, a
//   managed one): connect to it;
// - no URL (the embedded, single-machine mode of `npm start`): run a private
//   `redis-server` as a child process, on 127.0.0.1 and a free port, with
//   its files in <JOTA_DATA_DIR>/redis.
//
// The private server keeps every queued job across restarts and crashes:
// the append-only file is on with appendfsync ALWAYS, so a write is on disk
// (fsynced) before Redis replies to it. Not everysec: with everysec, while a
// background fsync is slow (a busy disk) Redis holds new writes in memory for
// up to two seconds yet still replies, and a crash then loses jobs it has
// acknowledged (seen here: 1 in 12 SIGKILLs under disk load). Job traffic is
// a handful of writes per document, so the cost does not show. No RDB
// snapshots. It listens on loopback only, with a password generated per
// start and handed over on stdin (never on a command line that `ps` shows),
// because job payloads hold users' documents. It dies with Jota: the kernel
// sends it SIGTERM when its parent dies (`setpriv --pdeathsig`, the same
// prctl(PR_SET_PDEATHSIG) the engines' own --exit-with-parent uses, see
// engines/process.ts); one data folder has at most one private server at a
// time (a lock file, like the embedded database's, db/lock.ts); and one that
// crashes is started again on the same folder and port.
//
// Every connection has maxRetriesPerRequest: null, as BullMQ workers need:
// while Redis is away, commands wait for it instead of failing.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { Redis, type RedisOptions } from "ioredis";
import { acquireDataDirLock, DataDirLockedError, type DataDirLock } from "../db/lock";
import { silentLogger, type Logger } from "../log";
import { freePort } from "../free-port";

export interface OpenRedisOptions {
  /** REDIS_URL; empty or absent starts a private redis-server in dataDir/redis. */
  url?: string;
  /** JOTA_DATA_DIR: the private server's files go to <dataDir>/redis. Required without a URL. */
  dataDir?: string;
  logger?: Logger;
  /** How long to wait for Redis to answer (connect, or start and load its file). Default 30000. */
  timeoutMs?: number;
  /** The server binary, for the private mode. Default: redis-server on the PATH. */
  binary?: string;
}

export interface PrivateRedis {
  /** The server's pid (it changes with restart()). */
  readonly pid: number | undefined;
  readonly port: number;
  /** <dataDir>/redis */
  readonly dir: string;
}

export interface RedisHandle {
  /** The shared connection (ioredis, maxRetriesPerRequest: null); BullMQ duplicates it where it needs more. */
  readonly connection: Redis;
  /** Where it is, for logs (the password redacted). */
  readonly location: string;
  /** Set when this handle runs its own redis-server. */
  readonly server: PrivateRedis | undefined;
  /**
   * Private mode only (tests): stops the server (SIGKILL: as a crash; SIGTERM:
   * cleanly) and starts it again on the same folder and port. The connection
   * reconnects by itself; resolves once it answers again.
   */
  restart(how?: "SIGKILL" | "SIGTERM"): Promise<void>;
  /** Closes the connection and, in private mode, stops the server and waits for its exit. */
  close(): Promise<void>;
}

export class RedisError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A URL's password replaced by ***, for messages and logs. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable REDIS_URL)";
  }
}

export async function openRedis(opts: OpenRedisOptions): Promise<RedisHandle> {
  const logger = (opts.logger ?? silentLogger).child({ component: "redis" });
  const timeoutMs = opts.timeoutMs ?? 30_000;
  if (opts.url) return connectUrl(opts.url, logger, timeoutMs);
  if (!opts.dataDir) throw new RedisError("openRedis: neither a REDIS_URL nor a data folder for a private redis-server");
  return PrivateRedisHandle.start(opts.dataDir, opts.binary, logger, timeoutMs);
}

const baseOptions: RedisOptions = { maxRetriesPerRequest: null, lazyConnect: false };

/** Resolves once `conn` is ready; otherwise disconnects it and rejects with the last error. */
function whenReady(conn: Redis, where: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let lastError = "";
    const done = (err?: Error) => {
      clearTimeout(timer);
      conn.off("ready", onReady);
      conn.off("error", onError);
      if (!err) return resolve();
      conn.disconnect();
      reject(err);
    };
    const onReady = () => done();
    const onError = (err: Error & { code?: string }) => {
      lastError = err.message;
      // A refused password or a bad database number will not fix itself: say so now.
      if (err.name === "ReplyError") done(new RedisError(`Redis at ${where} refused the connection: ${err.message}`));
    };
    const timer = setTimeout(
      () => done(new RedisError(`cannot connect to Redis at ${where} within ${timeoutMs} ms${lastError ? `: ${lastError}` : ""}`)),
      timeoutMs,
    );
    conn.on("ready", onReady);
    conn.on("error", onError);
  });
}

/** Connection trouble is logged once per outage, not once per reconnection attempt. */
function watchConnection(conn: Redis, where: string, logger: Logger): void {
  let down = false;
  conn.on("error", (err: Error) => {
    if (down) return;
    down = true;
    logger.warn("Redis connection lost; reconnecting", { redis: where, error: err.message });
  });
  conn.on("ready", () => {
    if (!down) return;
    down = false;
    logger.info("Redis connection back", { redis: where });
  });
}

async function connectUrl(url: string, logger: Logger, timeoutMs: number): Promise<RedisHandle> {
  const where = redactRedisUrl(url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RedisError(`REDIS_URL is not a URL (redis://[:password@]host:6379[/db])`);
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:")
    throw new RedisError(`REDIS_URL ${where} is not a redis:// or rediss:// URL`);
  const connection = new Redis(url, { ...baseOptions, connectTimeout: Math.min(10_000, timeoutMs) });
  try {
    await whenReady(connection, where, timeoutMs);
  } catch (err) {
    throw new RedisError(`${(err as Error).message} (REDIS_URL)`);
  }
  watchConnection(connection, where, logger);
  logger.info("Redis ready", { redis: where });
  return {
    connection,
    location: where,
    server: undefined,
    restart: () => Promise.reject(new RedisError("restart() is only for a private redis-server (no REDIS_URL)")),
    close: async () => {
      await connection.quit().catch(() => connection.disconnect());
    },
  };
}


/** An executable on the PATH (or the path given), or undefined. */
function findExecutable(name: string): string | undefined {
  const candidates = name.includes("/")
    ? [name]
    : (process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(":").filter(Boolean).map((d) => path.join(d, name));
  for (const c of [...candidates, ...(name.includes("/") ? [] : [`/usr/sbin/${name}`, `/usr/bin/${name}`])]) {
    try {
      fs.accessSync(c, fs.constants.X_OK);
      if (fs.statSync(c).isFile()) return c;
    } catch {
      /* next */
    }
  }
  return undefined;
}

const READY = /Ready to accept connections/;
const STOP_GRACE_MS = 10_000;

class PrivateRedisHandle implements RedisHandle, PrivateRedis {
  readonly connection: Redis;
  private child: ChildProcess | undefined;
  private closed = false;
  readonly killOnExit = () => this.child?.kill("SIGTERM");

  private constructor(
    private readonly binary: string,
    private readonly setpriv: string | undefined,
    readonly dir: string,
    readonly port: number,
    private readonly password: string,
    private readonly lock: DataDirLock,
    private readonly logger: Logger,
    private readonly timeoutMs: number,
    child: ChildProcess,
  ) {
    this.adopt(child);
    process.on("exit", this.killOnExit);
    this.connection = new Redis({ ...baseOptions, host: "127.0.0.1", port, password });
    watchConnection(this.connection, this.location, logger);
  }

  private stopping = false;
  private relaunchTimer: NodeJS.Timeout | undefined;
  private relaunches = 0;

  /**
   * A server that dies unasked (a crash, the OOM killer) is started again on
   * the same folder and port, after a backoff (0.5 s doubling to 30 s while
   * it keeps failing); meanwhile commands wait on the connection.
   */
  private adopt(child: ChildProcess) {
    this.child = child;
    child.once("exit", (code, signal) => {
      if (this.stopping || this.closed || this.child !== child) return;
      this.logger.error("private redis-server died; starting it again", { pid: child.pid, code, signal });
      this.scheduleRelaunch();
    });
  }

  private scheduleRelaunch() {
    const delay = Math.min(30_000, 500 * 2 ** this.relaunches++);
    this.relaunchTimer = setTimeout(() => {
      this.relaunchTimer = undefined;
      launch(this.binary, this.setpriv, this.dir, this.port, this.password, this.logger, this.timeoutMs).then(
        (child) => {
          if (this.closed) return void child.kill("SIGTERM");
          this.relaunches = 0;
          this.adopt(child);
          this.logger.info("private redis-server started again", { pid: child.pid, port: this.port });
        },
        (err: Error) => {
          if (this.closed) return;
          this.logger.error("cannot start the private redis-server again", { error: err.message });
          this.scheduleRelaunch();
        },
      );
    }, delay);
  }

  private cancelRelaunch() {
    if (this.relaunchTimer) clearTimeout(this.relaunchTimer);
    this.relaunchTimer = undefined;
  }

  get location(): string {
    return `private redis-server 127.0.0.1:${this.port} (${this.dir})`;
  }
  get server(): PrivateRedis {
    return this;
  }
  get pid(): number | undefined {
    return this.child?.pid;
  }

  static async start(dataDir: string, binaryOpt: string | undefined, logger: Logger, timeoutMs: number): Promise<PrivateRedisHandle> {
    const binary = findExecutable(binaryOpt ?? "redis-server");
    if (!binary)
      throw new RedisError(
        `${binaryOpt ?? "redis-server"} is not installed, and REDIS_URL is not set: run \`npm start\` or \`npm run setup\` ` +
          `(scripts/setup.sh installs Debian's redis-server), or set REDIS_URL to a running Redis`,
      );
    // util-linux's setpriv sets the parent-death signal, then runs the server.
    const setpriv = findExecutable("setpriv");
    if (!setpriv) logger.warn("setpriv (util-linux) not found: the private redis-server will outlive this process if it is killed");
    const dir = path.resolve(dataDir, "redis");
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });

    let lock: DataDirLock;
    try {
      lock = await acquireDataDirLock(`${dir}.lock`, (why) =>
        logger.error("lost the lock on the private Redis folder: another process could start a second server on it", { why }),
      );
    } catch (err) {
      if (err instanceof DataDirLockedError) {
        const who = err.holder ? `process ${err.holder.pid} on ${err.holder.host}` : "another process";
        throw new RedisError(
          `the private Redis of ${dataDir} is in use by ${who} (${err.lockFile}): one Jota process runs it. ` +
            `Stop that process, or point every process at one Redis with REDIS_URL.`,
        );
      }
      throw err;
    }

    const password = randomBytes(24).toString("hex");
    try {
      // A free port can be taken between the check and the bind: try a few.
      for (let attempt = 1; ; attempt++) {
        const port = await freePort();
        try {
          const child = await launch(binary, setpriv, dir, port, password, logger, timeoutMs);
          const handle = new PrivateRedisHandle(binary, setpriv, dir, port, password, lock, logger, timeoutMs, child);
          try {
            await whenReady(handle.connection, handle.location, timeoutMs);
          } catch (err) {
            await handle.stopServer("SIGTERM");
            process.off("exit", handle.killOnExit);
            throw err;
          }
          logger.info("private Redis ready", { port, dir, pid: child.pid });
          return handle;
        } catch (err) {
          if (attempt < 3 && /Address already in use/i.test((err as Error).message)) continue;
          throw err;
        }
      }
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  private async stopServer(signal: "SIGKILL" | "SIGTERM"): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.stopping = true;
    const gone = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill(signal);
    const kill = setTimeout(() => {
      this.logger.warn("redis-server did not stop in time; killing it", { pid: child.pid });
      child.kill("SIGKILL");
    }, STOP_GRACE_MS);
    await gone;
    clearTimeout(kill);
    this.stopping = false;
  }

  async restart(how: "SIGKILL" | "SIGTERM" = "SIGKILL"): Promise<void> {
    if (this.closed) throw new RedisError("restart() after close()");
    this.cancelRelaunch();
    await this.stopServer(how);
    this.adopt(await launch(this.binary, this.setpriv, this.dir, this.port, this.password, this.logger, this.timeoutMs));
    // Answers once the connection has found the new server (commands wait meanwhile).
    await this.connection.ping();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cancelRelaunch();
    await this.connection.quit().catch(() => this.connection.disconnect());
    // SIGTERM: Redis fsyncs its append-only file and exits.
    await this.stopServer("SIGTERM");
    process.off("exit", this.killOnExit);
    // The lock's helper is unref'd (db/lock.ts): keep the process alive until it is gone.
    const keepAlive = setInterval(() => {}, 60_000);
    try {
      await this.lock.release();
    } finally {
      clearInterval(keepAlive);
    }
    this.logger.info("private Redis stopped", { dir: this.dir });
  }
}

/** Starts redis-server and resolves once it accepts connections (its file loaded). */
function launch(
  binary: string,
  setpriv: string | undefined,
  dir: string,
  port: number,
  password: string,
  logger: Logger,
  timeoutMs: number,
): Promise<ChildProcess> {
  // `redis-server -` reads its configuration from stdin.
  const config = [
    "bind 127.0.0.1",
    `port ${port}`,
    "protected-mode yes",
    `dir "${dir.replace(/["\\]/g, "\\$&")}"`,
    "appendonly yes",
    "appendfsync always",
    'save ""',
    `requirepass ${password}`,
    "daemonize no",
    'logfile ""',
  ].join("\n");
  const [cmd, args] = setpriv ? [setpriv, ["--pdeathsig", "SIGTERM", binary, "-"]] : [binary, ["-"]];
  const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], cwd: dir });
  child.stdin!.on("error", () => {}); // a server that dies at once closes its end early
  child.stdin!.end(config + "\n");
  const tail: string[] = [];
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (msg: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new RedisError(`private redis-server (${dir}, port ${port}) ${msg}${tail.length ? `; its last lines:\n${tail.join("\n")}` : ""}`));
    };
    const onLine = (line: string) => {
      if (!line.trim()) return;
      tail.push(line);
      if (tail.length > 20) tail.shift();
      logger.debug(line, { pid: child.pid });
      if (!settled && READY.test(line)) {
        settled = true;
        clearTimeout(timer);
        resolve(child);
      }
    };
    createInterface({ input: child.stdout! }).on("line", onLine);
    createInterface({ input: child.stderr! }).on("line", onLine);
    child.once("error", (err) => fail(`could not be run: ${err.message}`));
    child.once("exit", (code, signal) => {
      if (!settled) fail(`exited at start (${signal ?? `code ${code}`})`);
      else logger.debug("redis-server exited", { pid: child.pid, code, signal });
    });
    const timer = setTimeout(() => fail(`did not accept connections within ${timeoutMs} ms`), timeoutMs);
  });
}
