// Opens Jota's database: embedded PGlite (default) or PostgreSQL
// (DATABASE_URL); applies pending migrations; returns a PrismaClient on a
// driver adapter and the repositories over it.
import path from "node:path";
import { PrismaClient } from "@prisma/client";
import { repoRoot } from "../config/paths";
import type { Config, SharedBuffersSetting } from "../config/config";
import type { Logger } from "../log";
import { pgliteAdapter, postgresAdapter } from "./adapters";
import { embeddedDir, openEmbedded } from "./embedded";
import { MigrationError, migrate, readMigrations, type MigrateResult } from "./migrate";
import { NamesAsTextClient, createPool, redactUrl } from "./postgres";
import { pgliteSql, poolSql, type DirectSql } from "./direct-sql";
import { createRepositories, type Repositories } from "./repositories";
import { pgliteSession, pgSession } from "./sql";

export const defaultMigrationsDir = path.join(repoRoot, "prisma", "migrations");

export type Backend = "pglite" | "postgres";

export interface DatabaseOptions {
  /** PostgreSQL URL; without it, the embedded database in `dataDir`. */
  url?: string;
  /** Directory of the embedded database (see embeddedDir). */
  dataDir?: string;
  /** The embedded database's shared_buffers (embedded.ts); default "auto". */
  sharedBuffers?: SharedBuffersSetting;
  logger: Logger;
  migrationsDir?: string;
  /** PostgreSQL connections per process. */
  poolSize?: number;
  /**
   * The server secret (JOTA_SECRET or the generated one) that API keys and
   * device tokens are hashed under. Without it the database works, but
   * creating or checking a credential throws MissingSecretError.
   */
  secret?: string;
}

export interface Database {
  readonly backend: Backend;
  /** Where the data is: the embedded directory, or the URL without its password. */
  readonly location: string;
  readonly prisma: PrismaClient;
  /** The same database through its driver, for the hot paths (direct-sql.ts). */
  readonly sql: DirectSql;
  readonly repos: Repositories;
  readonly migrations: MigrateResult;
  close(): Promise<void>;
}

export function databaseOptions(config: Config, logger: Logger): DatabaseOptions {
  return config.databaseUrl
    ? { url: config.databaseUrl, logger }
    : { dataDir: embeddedDir(config), sharedBuffers: config.pgSharedBuffers, logger };
}

export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  const migrations = readMigrations(opts.migrationsDir ?? defaultMigrationsDir);
  const logger = opts.logger.child({ component: "db" });

  if (opts.url) {
    const location = redactUrl(opts.url);
    // Migrations on their own connection: a script is several statements,
    // which only the simple protocol of a plain client runs.
    const client = new NamesAsTextClient({ connectionString: opts.url });
    let result: MigrateResult;
    try {
      await client.connect();
      result = await migrate(pgSession(client), migrations, logger);
    } catch (err) {
      throw withContext(err, `PostgreSQL at ${location}`);
    } finally {
      await client.end().catch(() => {});
    }
    const pool = createPool(opts.url, opts.poolSize);
    pool.on("error", (err) => logger.warn("idle PostgreSQL connection failed", { error: err.message }));
    const prisma = new PrismaClient({ adapter: postgresAdapter(pool) });
    logger.info("database ready", { backend: "postgres", location, applied: result.applied });
    return finish("postgres", location, prisma, poolSql(pool, location, async () => {}), result, opts.secret, async () => {
      await prisma.$disconnect();
      await pool.end();
    });
  }

  if (!opts.dataDir) throw new Error("openDatabase: neither a PostgreSQL URL nor an embedded data directory");
  const handle = await openEmbedded(opts.dataDir, logger, { sharedBuffers: opts.sharedBuffers });
  try {
    const result = await migrate(pgliteSession(handle.pglite), migrations, logger);
    const prisma = new PrismaClient({ adapter: pgliteAdapter(handle.pglite) });
    logger.info("database ready", {
      backend: "pglite",
      location: handle.dir,
      applied: result.applied,
      durability: "survives a process crash, not a power loss (see control-plane/src/db/embedded.ts)",
    });
    return finish("pglite", handle.dir, prisma, pgliteSql(handle.pglite, handle.dir, async () => {}), result, opts.secret, async () => {
      await prisma.$disconnect();
      await handle.close();
    });
  } catch (err) {
    await handle.close();
    throw err;
  }
}

function finish(
  backend: Backend,
  location: string,
  prisma: PrismaClient,
  sql: DirectSql,
  migrations: MigrateResult,
  secret: string | undefined,
  close: () => Promise<void>,
): Database {
  let closing: Promise<void> | undefined;
  return {
    backend,
    location,
    prisma,
    sql,
    repos: createRepositories(prisma, sql, { secret }),
    migrations,
    close: () => (closing ??= close()),
  };
}

/** Connection errors say which database; a MigrationError already says what failed. */
function withContext(err: unknown, where: string): Error {
  if (err instanceof MigrationError) return err;
  return new Error(`cannot use ${where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
