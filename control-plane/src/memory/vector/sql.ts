// The SQL connection the pgvector store runs on: Jota's own database through
// its driver (db/direct-sql.ts says why not through Prisma), opened by the
// store itself so that it can live apart from the Database (bench:memory,
// a worker process).
// - Embedded: the PGlite instance of the data directory, shared with the
//   process's Database (embedded.ts memoises one instance per directory and
//   counts references), so there is still one instance and one lock.
// - PostgreSQL: a small pool of its own on the same URL.
import { pgliteSql, poolSql, type DirectSql } from "../../db/direct-sql";
import { openEmbedded } from "../../db/embedded";
import { createPool, redactUrl } from "../../db/postgres";
import { silentLogger, type Logger } from "../../log";

export type { SqlRunner } from "../../db/direct-sql";
export type VectorSql = DirectSql;

/** Where the database is: an embedded directory or a PostgreSQL URL (the shape openDatabase takes). */
export type SqlLocation = { dataDir: string; url?: undefined } | { url: string; dataDir?: undefined };

export async function openVectorSql(loc: SqlLocation, opts: { logger?: Logger; poolSize?: number } = {}): Promise<VectorSql> {
  if (loc.url) {
    const logger = opts.logger ?? silentLogger;
    const pool = createPool(loc.url, opts.poolSize ?? 4);
    // An idle connection the server drops (restart, failover) is reported,
    // not thrown: the pool replaces it on the next query.
    pool.on("error", (err) => logger.warn("idle PostgreSQL connection of the vector store failed", { error: err.message }));
    // pool.end() resolves once its clients are told to end, before their
    // sockets close: a server shutting down just then would make an
    // unhandled 'error' on a connection that no longer matters.
    pool.on("remove", (client) => client.on("error", () => {}));
    return poolSql(pool, redactUrl(loc.url));
  }
  if (!loc.dataDir) throw new Error("openVectorSql: neither a PostgreSQL URL nor an embedded data directory");
  const handle = await openEmbedded(loc.dataDir, opts.logger ?? silentLogger);
  return pgliteSql(handle.pglite, handle.dir, () => handle.close());
}

