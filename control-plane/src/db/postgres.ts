// PostgreSQL through node-postgres, for production (DATABASE_URL).
import pg from "pg";

const NAME = 19;
const CHAR = 18;
const TEXT = 25;

type Field = { dataTypeID: number };

function namesAsText(result: unknown): unknown {
  for (const r of Array.isArray(result) ? result : [result]) {
    const fields = (r as { fields?: Field[] } | undefined)?.fields;
    if (fields) for (const f of fields) if (f.dataTypeID === NAME || f.dataTypeID === CHAR) f.dataTypeID = TEXT;
  }
  return result;
}

/**
 * A pg.Client whose promise-returning queries (the form Prisma's adapter
 * uses) report `name` and `"char"` columns as `text`. Prisma's
 * driver adapter cannot deserialize those two types (prisma/orm#27403); the
 * catalog queries of Prisma's schema engine (the CLI through
 * prisma.config.ts) and raw queries such as `SELECT current_user` return
 * them. Their values are plain strings either way.
 */
export class NamesAsTextClient extends pg.Client {}
const baseQuery = pg.Client.prototype.query as (...args: unknown[]) => unknown;
NamesAsTextClient.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  const out = baseQuery.apply(this, args);
  return out instanceof Promise ? out.then(namesAsText) : out;
} as typeof pg.Client.prototype.query;

/**
 * A pool for Prisma's adapter; `max` connections per process. Idle
 * connections do not keep the process alive (a server is kept alive by what
 * it serves; the Prisma CLI would otherwise linger for the idle timeout).
 */
export function createPool(url: string, max = 10): pg.Pool {
  return new pg.Pool({ connectionString: url, max, Client: NamesAsTextClient, allowExitOnIdle: true });
}

/** The URL with its password hidden, for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable DATABASE_URL)";
  }
}
