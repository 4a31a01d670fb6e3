// Applies prisma/migrations at start-up with `prisma migrate deploy`
// semantics: pending migrations, in name order, never generating or resetting
// anything. It runs in-process over the back-end's own driver instead of
// spawning the Prisma CLI, because the embedded database can be open in one
// process only (the CLI would be a second one), and the CLI's PGlite leaves
// timers that keep it alive ~10 s.
//
// The bookkeeping is Prisma's own `_prisma_migrations` table, row for row, so
// `prisma migrate status` / `migrate resolve` / `migrate deploy` read the same
// state. One deliberate difference: each migration runs in ONE transaction,
// so a failing migration leaves nothing half-applied. Its attempt is recorded
// (finished_at NULL, the error in `logs`, what Prisma calls a failed
// migration) and the error is thrown; since nothing of it was applied, the
// next start marks that attempt rolled back and tries again.
// Statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY) are
// therefore not allowed in migrations.
import { createHash, randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { Logger } from "../log";
import type { SqlSession } from "./sql";

/** Prisma's advisory lock key: the CLI and every replica of this runner exclude each other. */
const ADVISORY_LOCK = 72707369;

export class MigrationError extends Error {
  constructor(
    readonly migration: string,
    cause: unknown,
  ) {
    super(`migration ${migration} failed and was rolled back: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
    this.name = "MigrationError";
  }
}

export interface LocalMigration {
  name: string;
  sql: string;
  /** SHA-256 of migration.sql, as Prisma computes it. */
  checksum: string;
}

export interface MigrateResult {
  applied: string[];
  /** Applied in the database, absent here (a newer release ran on this database?). */
  unknown: string[];
}

interface MigrationRow {
  id: string;
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
  logs: string | null;
}

export function readMigrations(dir: string): LocalMigration[] {
  if (!fs.existsSync(dir)) throw new Error(`migrations folder ${dir} does not exist`);
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(dir, d.name, "migration.sql")))
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const sql = fs.readFileSync(path.join(dir, name, "migration.sql"), "utf8");
      return { name, sql, checksum: createHash("sha256").update(sql).digest("hex") };
    });
}

// Prisma's DDL for the table, so a database migrated here looks to the CLI
// exactly like one it migrated itself.
const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

export async function migrate(db: SqlSession, migrations: LocalMigration[], logger: Logger): Promise<MigrateResult> {
  await db.query("SELECT pg_advisory_lock($1)", [ADVISORY_LOCK]);
  try {
    await db.exec(CREATE_TABLE);
    const rows = await db.query<MigrationRow>(
      `SELECT id, migration_name, checksum, finished_at, rolled_back_at, logs FROM "_prisma_migrations" ORDER BY started_at`,
    );
    const done = new Map(rows.filter((r) => r.finished_at && !r.rolled_back_at).map((r) => [r.migration_name, r]));
    const local = new Set(migrations.map((m) => m.name));

    for (const failed of rows.filter((r) => !r.finished_at && !r.rolled_back_at)) {
      logger.warn("retrying a migration that failed before (it was rolled back then)", {
        migration: failed.migration_name,
        previousError: failed.logs,
      });
      await db.query(`UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE id = $1`, [failed.id]);
    }
    for (const m of migrations) {
      const row = done.get(m.name);
      if (row && row.checksum !== m.checksum)
        logger.warn("an applied migration was edited since; the database keeps what the original did", { migration: m.name });
    }

    const applied: string[] = [];
    for (const m of migrations.filter((m) => !done.has(m.name))) {
      await apply(db, m);
      applied.push(m.name);
      logger.info("migration applied", { migration: m.name });
    }
    return { applied, unknown: [...done.keys()].filter((n) => !local.has(n)) };
  } finally {
    await db.query("SELECT pg_advisory_unlock($1)", [ADVISORY_LOCK]);
  }
}

async function apply(db: SqlSession, m: LocalMigration): Promise<void> {
  const id = randomUUID();
  // The attempt is recorded outside the migration's transaction, so a
  // failure stays on record after the rollback.
  await db.query(`INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at) VALUES ($1, $2, $3, now())`, [
    id,
    m.checksum,
    m.name,
  ]);
  try {
    await db.transaction(async (tx) => {
      await tx.exec(m.sql);
      await tx.query(`UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1 WHERE id = $1`, [id]);
    });
  } catch (err) {
    const log = err instanceof Error ? err.message : String(err);
    await db.query(`UPDATE "_prisma_migrations" SET logs = $2 WHERE id = $1`, [id, log]);
    throw new MigrationError(m.name, err);
  }
}
