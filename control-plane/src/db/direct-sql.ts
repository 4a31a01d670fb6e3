// Jota's database reached through its driver directly rather than through
// Prisma, for the few paths where Prisma's per-query cost matters: the chat
// turn's reads and writes (every turn's time to first token) and the vector
// store. Measured on PGlite (median of 30): a primary-key read took 0.8 ms on
// the instance and 4.6 ms through Prisma 6.19's client engine and driver
// adapter; the turn's first write (request + user message, one
// transaction) 1.3 ms against 13 ms.
//
// - Embedded: the PGlite instance of the data directory, shared with the
//   process's Prisma client (embedded.ts memoises one instance per directory),
//   so there is still one instance and one lock. PGlite runs one query at a
//   time; a transaction holds it until it ends.
// - PostgreSQL: a pg pool (the Database's own, shared with Prisma's adapter).
//
// Rows come back as the drivers make them: timestamptz as Date, integers and
// doubles as numbers, uuid and enums as strings, json parsed.
import type { PGlite, Transaction } from "@electric-sql/pglite";
import type pg from "pg";

export interface SqlRunner {
  query<R>(sql: string, params?: unknown[]): Promise<R[]>;
  /** Rows affected. */
  execute(sql: string, params?: unknown[]): Promise<number>;
}

export interface DirectSql extends SqlRunner {
  readonly backend: "pglite" | "postgres";
  /** Where the data is, for messages: the directory, or the URL without its password. */
  readonly location: string;
  /** Runs `fn` in one transaction on one connection: COMMIT if it resolves, ROLLBACK if it throws. */
  transaction<T>(fn: (tx: SqlRunner) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

function pgliteRunner(q: PGlite | Transaction): SqlRunner {
  return {
    query: async <R>(sql: string, params?: unknown[]) => (await q.query<R>(sql, params)).rows,
    execute: async (sql, params) => (await q.query(sql, params)).affectedRows ?? 0,
  };
}

export function pgliteSql(db: PGlite, location: string, close: () => Promise<void>): DirectSql {
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

/** `close` ends the pool unless the pool has another owner (the Database closes its own). */
export function poolSql(pool: pg.Pool, location: string, close: () => Promise<void> = () => pool.end()): DirectSql {
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
    close,
  };
}
