// The few raw-SQL operations that run outside Prisma (migrations), over each
// back-end's own driver: a migration is a multi-statement script, which
// Prisma's raw queries (one prepared statement each) cannot run.
import type { PGlite, Transaction } from "@electric-sql/pglite";
import type pg from "pg";

export interface SqlSession {
  /** Runs a script of any number of statements, without parameters. */
  exec(script: string): Promise<void>;
  query<Row>(sql: string, params?: unknown[]): Promise<Row[]>;
  /** Runs `fn` in one transaction: COMMIT if it resolves, ROLLBACK if it throws. */
  transaction<T>(fn: (tx: SqlSession) => Promise<T>): Promise<T>;
}

export function pgliteSession(db: PGlite): SqlSession {
  const over = (q: PGlite | Transaction): Omit<SqlSession, "transaction"> => ({
    exec: async (script) => {
      await q.exec(script);
    },
    query: async <Row>(sql: string, params?: unknown[]) => (await q.query<Row>(sql, params)).rows,
  });
  return {
    ...over(db),
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({
          ...over(tx),
          transaction: () => Promise.reject(new Error("nested transactions are not supported")),
        }),
      ),
  };
}

export function pgSession(client: pg.Client): SqlSession {
  const base: Omit<SqlSession, "transaction"> = {
    exec: async (script) => {
      await client.query(script); // no parameters: the simple protocol, which runs several statements
    },
    query: async <Row>(sql: string, params?: unknown[]) => (await client.query(sql, params)).rows as Row[],
  };
  return {
    ...base,
    transaction: async (fn) => {
      await client.query("BEGIN");
      try {
        const out = await fn({ ...base, transaction: () => Promise.reject(new Error("nested transactions are not supported")) });
        await client.query("COMMIT");
        return out;
      } catch (err) {
        await client.query("ROLLBACK");
        throw err;
      }
    },
  };
}
