// The embedded database: PGlite (PostgreSQL compiled to WASM, in this
// process) with pgvector, its data in a directory.
//
// Two rules keep the directory healthy:
// - one PGlite instance per directory per process: instances are memoised
//   and reference-counted here (two instances on one directory corrupted it
//   for good, and the Prisma CLI asks the config for an adapter twice);
// - one process per directory: the instance is opened only under the
//   directory's lock (lock.ts).
//
// Durability: PGlite runs PostgreSQL with fsync off, and its file system
// layer does not fsync either (checked: no fsync/fdatasync system call even
// with fsync=on). A COMMIT has written its WAL to the operating system by the
// time it returns (synchronous_commit is on), so committed data survives the
// process crashing or being killed; it does NOT survive the machine losing
// power or the kernel crashing. Deployments that need that run PostgreSQL
// (DATABASE_URL).
import fs from "node:fs";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { vector } from "@electric-sql/pglite-pgvector";
import { acquireDataDirLock } from "./lock";
import type { Logger } from "../log";

export interface EmbeddedHandle {
  readonly pglite: PGlite;
  readonly dir: string;
  /** Drops this handle; the last one closes the instance and releases the lock. */
  close(): Promise<void>;
}

interface Entry {
  refs: number;
  opening: Promise<{ pglite: PGlite; releaseLock: () => Promise<void> }>;
}

const open = new Map<string, Entry>();
/** Directories whose last handle is closing: they still hold the lock until that ends. */
const closing = new Map<string, Promise<void>>();

/** Where the embedded database lives inside JOTA_DATA_DIR. */
export function embeddedDir(config: { dataDir: string }): string {
  return path.join(config.dataDir, "db");
}

export function lockFileFor(dir: string): string {
  return `${path.resolve(dir)}.lock`;
}

/** Opens (or shares, within this process) the PGlite database in `dir`, creating it if needed. */
export async function openEmbedded(dir: string, logger: Logger): Promise<EmbeddedHandle> {
  const key = path.resolve(dir);
  await closing.get(key);
  let entry = open.get(key);
  if (!entry) {
    entry = { refs: 0, opening: start(key, logger) };
    open.set(key, entry);
    entry.opening.catch(() => open.delete(key)); // a failed open is not memoised
  }
  entry.refs++;
  let pglite: PGlite;
  try {
    ({ pglite } = await entry.opening);
  } catch (err) {
    entry.refs--;
    throw err;
  }
  let closed = false;
  const e = entry;
  return {
    pglite,
    dir: key,
    close: async () => {
      if (closed) return;
      closed = true;
      if (--e.refs > 0) return;
      open.delete(key);
      const done = (async () => {
        const { pglite: db, releaseLock } = await e.opening;
        try {
          await db.close();
        } finally {
          await releaseLock();
        }
      })();
      closing.set(key, done);
      try {
        await done;
      } finally {
        if (closing.get(key) === done) closing.delete(key);
      }
    },
  };
}

async function start(dir: string, logger: Logger) {
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const lock = await acquireDataDirLock(lockFileFor(dir), (why) =>
    logger.error("embedded database lock lost: another process could now open the same data and lose writes", { dir, why }),
  );
  try {
    const fresh = !fs.existsSync(path.join(dir, "PG_VERSION"));
    const t0 = performance.now();
    const pglite = await PGlite.create({ dataDir: dir, extensions: { vector } });
    logger.info(fresh ? "embedded database created" : "embedded database opened", {
      dir,
      ms: Math.round(performance.now() - t0),
    });
    return { pglite, releaseLock: () => lock.release() };
  } catch (err) {
    await lock.release();
    throw err;
  }
}
