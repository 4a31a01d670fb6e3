// Everything behind the network faces, started in order and stopped in
// reverse: the database (migrated), the local engines (when no engine URLs
// are configured), the engine pool, the intent router and the turn runner.
// `npm start` and the gateway tests build the same Stack.
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { QueueEvents } from "bullmq";
import {
  EnginePool,
  INTERRUPTED,
  TurnRunner,
  databaseOptions,
  localEngines,
  openDatabase,
  startDocumentWorker,
  IngestQueue,
  Memories,
  MemoryQueue,
  openRedis,
  startMemoryWorker,
  openVectorStore,
  routerFromConfig,
  UnavailableRetriever,
  VectorRetriever,
  type Config,
  type Database,
  type EngineProcess,
  type IntentRouter,
  type IngestWorker,
  type Logger,
  type MemoryWorker,
  type TurnSettled,
  type RedisHandle,
  type VectorStore,
} from "@jota/control-plane";

export interface Stack {
  config: Config;
  log: Logger;
  db: Database;
  pool: EnginePool;
  router: IntentRouter;
  runner: TurnRunner;
  /** Semantic memory (pgvector in the database, or Qdrant); undefined when it could not be opened. */
  store: VectorStore | undefined;
  /** What Jota remembers about users (rows and their vectors); undefined without a vector store. */
  memories: Memories | undefined;
  /** The job queues on Redis, with this process's ingest worker; undefined when Redis could not be used. */
  jobs: Jobs | undefined;
  /** The server secret (JOTA_SECRET, or the one generated into the data folder). */
  secret: string;
  /** Engine processes this stack started (empty when it uses JOTA_*_URLS). */
  processes: EngineProcess[];
  close(): Promise<void>;
}

export interface StackOptions {
  /** Pool timings (tests shorten them). */
  pool?: { infoIntervalMs?: number; backoffInitialMs?: number; backoffMaxMs?: number };
}

export async function openStack(config: Config, log: Logger, opts: StackOptions = {}): Promise<Stack> {
  fs.mkdirSync(config.dataDir, { recursive: true });
  const cleanups: (() => Promise<void> | void)[] = [];
  // Every step is tried, the last opened first; one that fails is logged and the rest still close.
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      for (const c of [...cleanups].reverse()) {
        try {
          await c();
        } catch (err) {
          log.error("a component failed to close", { error: (err as Error)?.message ?? String(err) });
        }
      }
    })());
  try {
    const secret = serverSecret(config);
    const db = await openDatabase({ ...databaseOptions(config, log), secret });
    cleanups.push(() => db.close());
    if (db.backend === "pglite") {
      // One process at a time holds the embedded database (its lock), and no turn of this one has
      // begun: whatever is in flight was left by a run that stopped mid-turn, and would stay
      // PROCESSING for its callers forever. (On PostgreSQL other gateways' turns may be running: the
      // nightly upkeep ends those a day old.)
      const n = await db.repos.requests.failInFlight(new Date(), INTERRUPTED);
      if (n > 0) log.warn("turns the previous run left unfinished are marked FAILED", { requests: n });
    }

    const engines = localEngines(config, log);
    const processes = [engines.inference, engines.transcription].filter((e): e is EngineProcess => !!e);
    cleanups.push(() => Promise.all(processes.map((p) => p.stop())).then(() => {}));
    await Promise.all(processes.map((p) => p.start()));

    const pool = new EnginePool({
      inference: engines.inference?.address ? [engines.inference.address] : config.inferenceUrls,
      transcription: engines.transcription?.address ? [engines.transcription.address] : config.transcriptionUrls,
      token: config.engineToken,
      logger: log,
      ...opts.pool,
    });
    cleanups.push(() => pool.close());
    const router = routerFromConfig(config, log, (req, signal) => pool.generate(req, { signal }));
    const store = await openMemory(config, db, log);
    if (store) cleanups.push(() => store.close());
    const retrieval =
      config.memory.retrieval === "off"
        ? undefined
        : {
            retriever: store ? new VectorRetriever(store, pool, { memories: db.repos.memories, documents: db.repos.documents }) : new UnavailableRetriever("the vector store could not be opened at start-up (see the log)"),
            mode: config.memory.retrieval,
          };
    const memories = store ? new Memories(db.repos, store, pool) : undefined;
    // Turns settle before the queues exist only in the moments of start-up; those queue nothing.
    let jobs: Jobs | undefined;
    const afterTurn = (t: TurnSettled) => jobs && queueMemoryWork(config, jobs.memoryQueue, t, log);
    const runner = new TurnRunner({ repos: db.repos, pool, router, logger: log, retrieval, afterTurn, engineStallMs: config.engineStallMs });
    cleanups.push(() => runner.close());
    jobs = store && memories ? await openJobs(config, db, pool, store, memories, log, cleanups) : undefined;
    return { config, log, db, pool, router, runner, store, memories, jobs, secret, processes, close };
  } catch (err) {
    await close();
    throw err;
  }
}

export interface Jobs {
  redis: RedisHandle;
  queue: IngestQueue;
  worker: IngestWorker;
  /**
   * The ingest queue's job events (state changes, progress), read once per
   * process and fanned out to the WebSocket watches (ws/jobs.ts).
   */
  events: QueueEvents;
  /** Memory extraction, summaries and the nightly upkeep (jobs/memory.ts), with this process's worker. */
  memoryQueue: MemoryQueue;
  memoryWorker: MemoryWorker;
}

/**
 * Redis (REDIS_URL, or a private redis-server in the data folder), the ingest
 * queue, and an ingest worker in this process: the single-machine mode runs
 * its jobs itself (more workers: `npm run jota -- worker`). Redis that cannot
 * be used does not stop Jota: uploads answer 503 jobs_unavailable.
 */
async function openJobs(
  config: Config,
  db: Database,
  pool: EnginePool,
  store: VectorStore,
  memories: Memories,
  log: Logger,
  cleanups: (() => Promise<void> | void)[],
): Promise<Jobs | undefined> {
  let redis: RedisHandle;
  try {
    redis = await openRedis({ url: config.jobs.redisUrl, dataDir: config.dataDir, logger: log });
  } catch (err) {
    log.error("the job queue is unavailable: documents cannot be ingested", { error: (err as Error)?.message ?? String(err) });
    return undefined;
  }
  cleanups.push(() => redis.close());
  const queue = new IngestQueue({ connection: redis.connection });
  cleanups.push(() => queue.close());
  const worker = startDocumentWorker(db.repos.documents, { connection: redis.connection, pool, store, logger: log, concurrency: config.jobs.concurrency });
  cleanups.push(() => worker.close());
  // QueueEvents blocks on its reads (XREAD): BullMQ gives it its own duplicate of the connection, and closes that with it.
  const events = new QueueEvents(queue.name, { connection: redis.connection });
  events.on("error", (err) => log.debug("ingest queue events error", { error: err.message }));
  cleanups.push(() => events.close());
  await events.waitUntilReady().catch((err: Error) => log.warn("the ingest queue's events are not ready yet", { error: err.message }));
  const memoryQueue = new MemoryQueue({ connection: redis.connection, extractDelayMs: config.memory.extractionDelayMs, logger: log });
  cleanups.push(() => memoryQueue.close());
  const memoryWorker = startMemoryWorker({ connection: redis.connection, repos: db.repos, memories, pool, logger: log, sql: db.sql });
  cleanups.push(() => memoryWorker.close());
  // Every process that opens the queues sets the same schedule: one schedule, one job a night.
  await memoryQueue
    .scheduleUpkeep(config.memory.upkeepAt, { retentionDays: config.memory.retentionDays })
    .catch((err: Error) => log.error("could not schedule the nightly upkeep", { error: err.message }));
  log.info("job queue ready", { redis: redis.location });
  return { redis, queue, worker, events, memoryQueue, memoryWorker };
}

/** A settled turn's background work: memory extraction after a completed one, a summary when its history was trimmed. */
function queueMemoryWork(config: Config, queue: MemoryQueue, t: TurnSettled, log: Logger): void {
  const failed = (what: string) => (err: Error) => log.warn(`could not queue ${what}`, { conversationId: t.conversationId, error: err.message });
  if (t.status === "COMPLETED" && config.memory.extraction)
    queue.extract({ userId: t.userId, conversationId: t.conversationId, requestId: t.requestId }).catch(failed("memory extraction"));
  if (t.summarizeThroughId)
    queue.summarize({ userId: t.userId, conversationId: t.conversationId, throughId: t.summarizeThroughId }).catch(failed("a summary"));
}

/**
 * The vector store: Qdrant (QDRANT_URL) or pgvector in Jota's database. One
 * that cannot be opened (Qdrant down, a PostgreSQL without pgvector) does not
 * stop Jota: turns answer without retrieved context and say why.
 */
async function openMemory(config: Config, db: Database, log: Logger): Promise<VectorStore | undefined> {
  try {
    return await openVectorStore({
      database: config.databaseUrl ? { url: config.databaseUrl } : { dataDir: db.location },
      qdrantUrl: config.memory.qdrantUrl,
      qdrantApiKey: config.memory.qdrantApiKey,
      logger: log,
    });
  } catch (err) {
    log.error("semantic memory is unavailable: turns will answer without retrieved context", { error: (err as Error)?.message ?? String(err) });
    return undefined;
  }
}

/** JOTA_SECRET, or the one generated into the data folder (the CLI uses the same). */
export function serverSecret(config: Config): string {
  fs.mkdirSync(config.dataDir, { recursive: true });
  return config.gateway.secret ?? loadOrCreateSecret(config.dataDir);
}

/** The generated server secret: created once (mode 0600), then read at every start. */
function loadOrCreateSecret(dataDir: string): string {
  const file = path.join(dataDir, "secret");
  try {
    return fs.readFileSync(file, "utf8").trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const secret = randomBytes(32).toString("base64url");
  try {
    fs.writeFileSync(file, secret + "\n", { mode: 0o600, flag: "wx" });
    return secret;
  } catch (err) {
    // Another process created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return fs.readFileSync(file, "utf8").trim();
    throw err;
  }
}
