// The SQL connection the pgvector store runs on: Jota's own database, reached
// through its driver directly rather than through Prisma. Measured on PGlite:
// a raw query through Prisma's client engine and driver adapter took about
// three times as long as the same query on the PGlite instance, and a
// query in its own transaction (as every vector search is, see pgvector.ts)
// about four times; that overhead alone was most of the query-latency budget.
//
// - Embedded: the PGlite instance of the data directory, shared with the
//   process's Database (embedded.ts memoises one instance per directory and
//   counts references), so there is still one instance and one lock.
// - PostgreSQL: a small pool of its own on the same URL.
import type { PGlite, Transaction } from "@electric-sql/pglite";
import type pg from "pg";
import { openEmbedded } from "../../db/embedded";
import { createPool, redactUrl } from "../../db/postgres";
import { silentLogger, type Logger } from "../../log";

export interface SqlRunner {
  query<R>(sql: string, params?: unknown[]): Promise<R[]>;
  /** Rows affected. */
  execute(sql: string, params?: unknown[]): Promise<number>;
}

export interface VectorSql extends SqlRunner {
  readonly backend: "pglite" | "postgres";
  /** Where the data is, for messages: the directory, or the URL without its password. */
  readonly location: string;
  /** Runs `fn` in one transaction on one connection: COMMIT if it resolves, ROLLBACK if it throws. */
  transaction<T>(fn: (tx: SqlRunner) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

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

function pgliteRunner(q: PGlite | Transaction): SqlRunner {
  return {
    query: async <R>(sql: string, params?: unknown[]) => (await q.query<R>(sql, params)).rows,
    execute: async (sql, params) => (await q.query(sql, params)).affectedRows ?? 0,
  };
}

export function pgliteSql(db: PGlite, location: string, close: () => Promise<void>): VectorSql {
  return {
    backend: "pglite",
    location,
    ...pgliteRunner(db),
    // PGlite's transaction() holds its one connection: other queries wait.
    transaction: (fn) => db.transaction((tx) => fn(pgliteRunner(tx))),
    close,
  };
}

function pgRunner(q: pg.Pool | pg.PoolClient): SqlRunner {
  return {
    query: async <R>(sql: string, params?: unknown[]) => (await q.query(sql, params)).rows as R[],
    execute: async (sql, params) => (await q.query(sql, params)).rowCount ?? 0,
  };
}

export function poolSql(pool: pg.Pool, location: string): VectorSql {
  return {
    backend: "postgres",
    location,
    ...pgRunner(pool),
    transaction: async (fn) => {
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        await client.query("BEGIN");
        const out = await fn(pgRunner(client));
        await client.query("COMMIT");
        return out;
      } catch (err) {
        try {
          await client.query("ROLLBACK");
        } catch (e) {
          broken = e as Error; // the connection is unusable: the pool drops it
        }
        throw err;
      } finally {
        client.release(broken);
      }
    },
    close: () => pool.end(),
  };
}
