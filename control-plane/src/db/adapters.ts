// Prisma driver adapters for both back-ends, used by the application's
// PrismaClient and by the Prisma CLI (prisma.config.ts).
import { PGlite } from "@electric-sql/pglite";
import { vector } from "@electric-sql/pglite-pgvector";
import { PrismaPg } from "@prisma/adapter-pg";
import type { SqlDriverAdapterFactory } from "@prisma/client/runtime/client";
import { PrismaPGlite } from "pglite-prisma-adapter";
import type pg from "pg";

type Adapter = Awaited<ReturnType<SqlDriverAdapterFactory["connect"]>>;

/** What both PrismaClient and the CLI's schema engine accept. */
export interface AdapterFactory extends SqlDriverAdapterFactory {
  connectToShadowDb(): Promise<Adapter>;
}

/**
 * Two fixes to pglite-prisma-adapter 0.6.1:
 * - `executeScript` starts the script and returns before it has run, so a
 *   failing migration would be reported as applied: it is awaited here;
 * - `executeRaw` always uses the extended protocol, which runs one statement,
 *   while Prisma's schema engine applies whole migrations to the shadow
 *   database with a parameterless executeRaw (node-postgres, and so the PG
 *   adapter, use the simple protocol for those): parameterless ones run as
 *   scripts here too.
 * Errors are mapped the way the adapter maps its own.
 */
function awaitingScripts(connected: unknown, db: PGlite, dispose?: () => Promise<void>): Adapter {
  // The adapter is typed against the driver-adapter-utils 6.10 it bundles,
  // whose types do not unify with Prisma 6.19's; at run time it works with
  // 6.19 (the db-* test suites run every repository through it).
  const adapter = connected as Adapter;
  const mapError = (adapter as unknown as { onError(e: unknown): never }).onError.bind(adapter);
  const script = async (sql: string) => {
    try {
      return await db.exec(sql);
    } catch (e) {
      return mapError(e);
    }
  };
  adapter.executeScript = async (sql) => {
    await script(sql);
  };
  const executeRaw = adapter.executeRaw.bind(adapter);
  adapter.executeRaw = async (query) => {
    if (query.args.length > 0) return executeRaw(query);
    const results = await script(query.sql);
    return results.reduce((n, r) => n + (r.affectedRows ?? 0), 0);
  };
  if (dispose) adapter.dispose = dispose;
  return adapter;
}

/** The adapter over an open PGlite instance (embedded.ts owns the instance). */
export function pgliteAdapter(db: PGlite): AdapterFactory {
  const inner = new PrismaPGlite(db);
  return {
    provider: inner.provider,
    adapterName: inner.adapterName,
    connect: async () => awaitingScripts(await inner.connect(), db),
    // The CLI's shadow database (`migrate diff --from-migrations`): a
    // throw-away in-memory instance, with pgvector like the real one.
    connectToShadowDb: async () => {
      const shadow = await PGlite.create({ extensions: { vector } });
      return awaitingScripts(await new PrismaPGlite(shadow).connect(), shadow, () => shadow.close());
    },
  };
}

export function postgresAdapter(pool: pg.Pool): AdapterFactory {
  return new PrismaPg(pool);
}
