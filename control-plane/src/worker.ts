// A worker process for background jobs: `tsx control-plane/src/worker.ts`
// (docker-compose's `worker` service) or `npm run jota -- worker`. It runs
// the ingest jobs (jobs/worker.ts) that gateways queue, beside them, on the
// same Redis, database and engines, and stops cleanly on SIGINT / SIGTERM
// (running jobs are aborted and queued again, see jobs/worker.ts).
//
// With JOTA_INFERENCE_URLS it also runs the memory jobs (jobs/memory.ts:
// extraction, summaries, nightly upkeep), which need the chat model.
//
// It needs REDIS_URL: without it, the Redis is the private one that `npm
// start` runs in its own process, with its workers in that same process (the
// embedded mode), and nobody else can reach it.
// Engines: JOTA_INFERENCE_URLS when set; otherwise the worker starts its own
// inference engine with only the embedding model (JOTA_EMBED_MODEL), on a
// free port, since the gateway's local engine is its own.
// Store: Qdrant (QDRANT_URL) or pgvector in Jota's database, as the gateway's;
// the documents' rows are in Jota's database too. Without DATABASE_URL that is
// the embedded database, so the worker can only run while no server holds
// that data folder (one process at a time): beside a server, use PostgreSQL.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { ConfigError, loadConfig, type Config } from "./config/config";
import { databaseOptions, openDatabase } from "./db/database";
import { DataDirLockedError } from "./db/lock";
import { EnginePool } from "./engines/pool";
import { EngineProcess } from "./engines/process";
import { openRedis, type RedisHandle } from "./jobs/redis";
import { startDocumentWorker } from "./jobs/documents";
import type { IngestWorker } from "./jobs/worker";
import { startMemoryWorker, type MemoryWorker } from "./jobs/memory";
import { Memories } from "./memory/memories";
import { createLogger, type Logger } from "./log";
import { openVectorStore, type VectorStore } from "./memory/vector";

/** Start-up cannot succeed as configured; `exitCode` 2 for a missing setting, 1 otherwise. */
export class WorkerSetupError extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 1,
  ) {
    super(message);
    this.name = "WorkerSetupError";
  }
}

export interface WorkerProcess {
  readonly config: Config;
  readonly redis: RedisHandle;
  readonly pool: EnginePool;
  readonly store: VectorStore;
  readonly ingest: IngestWorker;
  /** Memory extraction, summaries and upkeep: only beside chat engines (JOTA_INFERENCE_URLS), which they need. */
  readonly memory: MemoryWorker | undefined;
  /** The embedding engine this process started (absent with JOTA_INFERENCE_URLS). */
  readonly engine: EngineProcess | undefined;
  /** Stops the jobs, then everything else, in reverse order of start. */
  close(): Promise<void>;
}

/** An inference engine with only the embedding model, for a worker without JOTA_INFERENCE_URLS. */
function embeddingEngine(config: Config, logger: Logger): EngineProcess {
  const li = config.localInference;
  if (!li?.embedModel)
    throw new WorkerSetupError("the worker needs an embedding model: set JOTA_INFERENCE_URLS to running engines, or JOTA_EMBED_MODEL for one it starts");
  if (!fs.existsSync(li.embedModel))
    throw new WorkerSetupError(`JOTA_EMBED_MODEL=${li.embedModel} does not exist (run \`npm run setup\` for the test models, or point it at a real model)`);
  const binary = path.join(config.buildDir, "bin", "jota-inference");
  if (!fs.existsSync(binary)) throw new WorkerSetupError(`${binary} not found: run \`npm run setup\` (it builds the engines)`);
  const args = ["--listen", "127.0.0.1:0", "--embed-model", li.embedModel];
  if (li.threads) args.push("--threads", String(li.threads));
  return new EngineProcess({
    name: "inference",
    binary,
    args,
    // No chat model, whatever the environment says: this engine only embeds.
    env: { JOTA_ENGINE_TOKEN: config.engineToken, JOTA_MODEL: "" },
    healthService: "jota.v1.Inference",
    logger,
  });
}

/** Opens Redis (REDIS_URL), the engines, the vector store, and starts the ingest worker. */
export async function startWorkerProcess(config: Config, log: Logger): Promise<WorkerProcess> {
  if (!config.jobs.redisUrl)
    throw new WorkerSetupError(
      "REDIS_URL is not set. A separate worker process shares the gateways' Redis, which needs REDIS_URL; " +
        "without it, `npm start` runs a private Redis and its job workers inside its own process, and no worker process is needed.",
      2,
    );
  const cleanups: (() => Promise<void> | void)[] = [];
  const close = async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        log.warn("error while stopping", { error: (err as Error).message });
      }
    }
  };
  try {
    const redis = await openRedis({ url: config.jobs.redisUrl, logger: log });
    cleanups.push(() => redis.close());

    let engine: EngineProcess | undefined;
    if (config.inferenceUrls.length === 0) {
      engine = embeddingEngine(config, log);
      cleanups.push(() => engine!.stop());
      await engine.start();
    }
    const pool = new EnginePool({
      inference: engine ? [engine.address!] : config.inferenceUrls,
      transcription: [],
      token: config.engineToken,
      logger: log,
    });
    cleanups.push(() => pool.close());

    const { url, dataDir } = databaseOptions(config, log);
    let store: VectorStore;
    try {
      store = await openVectorStore({
        database: url ? { url } : { dataDir: dataDir! },
        qdrantUrl: config.memory.qdrantUrl,
        qdrantApiKey: config.memory.qdrantApiKey,
        logger: log,
      });
    } catch (err) {
      if (err instanceof DataDirLockedError)
        throw new WorkerSetupError(
          `${err.message} A worker process beside a running server needs DATABASE_URL (PostgreSQL); ` +
            "with the embedded database, the server runs its jobs itself.",
        );
      throw err;
    }
    cleanups.push(() => store.close());

    // The documents' rows (the same database the gateways use) follow their jobs.
    const db = await openDatabase(databaseOptions(config, log));
    cleanups.push(() => db.close());
    const ingest = startDocumentWorker(db.repos.documents, { connection: redis.connection, pool, store, logger: log, concurrency: config.jobs.concurrency });
    cleanups.push(() => ingest.close());
    // The memory jobs generate text: the engine this process starts has only the embedding model.
    let memory: MemoryWorker | undefined;
    if (!engine) {
      memory = startMemoryWorker({ connection: redis.connection, repos: db.repos, memories: new Memories(db.repos, store, pool), pool, logger: log, sql: db.sql });
      cleanups.push(() => memory!.close());
    } else log.info("memory jobs are left to the gateways: this worker's own engine has no chat model (set JOTA_INFERENCE_URLS to run them here)");
    log.info("worker ready", {
      redis: redis.location,
      engines: engine ? [`local ${engine.address}`] : config.inferenceUrls,
      store: store.kind,
      concurrency: config.jobs.concurrency,
      memoryJobs: !!memory,
    });
    return { config, redis, pool, store, ingest, memory, engine, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * The worker program: runs until SIGINT or SIGTERM, then stops cleanly.
 * Resolves with the exit code: 0 stopped by a signal, 1 start-up failed,
 * 2 configuration error.
 */
export async function runWorker(env: NodeJS.ProcessEnv = process.env, err: (s: string) => void = (s) => process.stderr.write(s)): Promise<number> {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`jota worker: configuration error: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const log = createLogger(config.logLevel, { component: "worker" });
  let proc: WorkerProcess | undefined;
  let stop: ((sig: NodeJS.Signals) => void) | undefined;
  const stopped = new Promise<NodeJS.Signals>((resolve) => (stop = resolve));
  const onSignal = (sig: NodeJS.Signals) => stop!(sig);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    try {
      proc = await startWorkerProcess(config, log);
    } catch (e) {
      if (e instanceof WorkerSetupError) {
        err(`jota worker: ${e.message}\n`);
        return e.exitCode;
      }
      log.error("start-up failed", { error: (e as Error).message });
      return 1;
    }
    const sig = await stopped;
    log.info("stopping", { reason: sig });
    await proc.close();
    log.info("stopped");
    return 0;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

// Run only as a program, not when imported (the CLI's `worker` command).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // process.exit, not process.exitCode: PGlite's WASM runtime sets exitCode to 0 when it shuts down.
  runWorker().then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`jota worker: ${e instanceof Error ? e.stack : String(e)}\n`);
      process.exit(1);
    },
  );
}
