// Housekeeping that PostgreSQL's autovacuum does by itself and PGlite, which
// has no autovacuum, never does. Without it the embedded database only grows:
// every turn updates its conversation and request rows (non-HOT updates, as
// last_message_at and status are indexed), and the dead versions are never
// reclaimed. Measured (4,000 turns over 20 conversations, PGlite): the 20
// conversation rows took 224 kB of heap and 920 kB of indexes, growing
// linearly; after one VACUUM the next 1,000 turns reused that heap instead
// of growing it. Nor are the planner's statistics ever gathered (reltuples
// stays -1), so plans rest on guesses.
import type { DirectSql } from "./direct-sql";

export interface VacuumResult {
  tables: number;
  ms: number;
}

/**
 * VACUUM (ANALYZE) of every table of the embedded database, one statement a
 * table: PGlite runs one statement at a time, so the turns waiting on the
 * instance get in between tables rather than behind the whole run. On
 * PostgreSQL it does nothing (autovacuum's job) and returns tables = 0.
 */
export async function vacuumEmbedded(sql: DirectSql, signal?: AbortSignal): Promise<VacuumResult> {
  const t0 = performance.now();
  if (sql.backend !== "pglite") return { tables: 0, ms: 0 };
  const tables = await sql.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
      ORDER BY pg_relation_size(c.oid), 1`,
  );
  for (const t of tables) {
    signal?.throwIfAborted();
    // The name comes from the catalog, quoted by format(%I).
    await sql.execute(`VACUUM (ANALYZE) ${t.name}`);
  }
  return { tables: tables.length, ms: performance.now() - t0 };
}
