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
//
// Page cache (shared_buffers): PGlite reads a page that is not in its cache
// through Emscripten's file system, one synchronous read a page, and that is
// what a vector search mostly does once its HNSW index outgrows the cache.
// Measured on this 2-core machine, 100k vectors of 384 dimensions (index
// 195 MB, table 156 MB), ef_search 400: p50 / p95 60.5 / 66.8 ms with
// PostgreSQL's default 128 MB against 18.6 / 21.1 ms with 512 MB. The cache
// is not free: PGlite touches all of it at start (process RSS 569 MB with
// 128 MB, 783 MB with 512 MB, 1335 MB with 1 GB), and its WebAssembly memory
// holds everything else too (2 GB did not start). So by default ("auto") it
// is sized when the database opens, to the data it then holds: 1.25 times
// the database files, rounded up to 64 MB, at least 128 MB (the default
// before) and at most 1 GB or an eighth of the machine's memory. A database
// that grows past its cache gets a larger one at the next start;
// JOTA_PG_SHARED_BUFFERS sets it outright.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { vector } from "@electric-sql/pglite-pgvector";
import { acquireDataDirLock } from "./lock";
import type { Logger } from "../log";
import type { SharedBuffersSetting } from "../config/config";

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

export interface EmbeddedOptions {
  /** shared_buffers: megabytes, or "auto" (the default: sized to the data, see above). The first opener's setting holds while the instance is shared. */
  sharedBuffers?: SharedBuffersSetting;
}

const MB = 1024 * 1024;
export const AUTO_SHARED_BUFFERS_MIN_MB = 128;

/** The most "auto" gives: 1 GB, or an eighth of this machine's memory on a small one. */
export function autoSharedBuffersMaxMb(totalMemBytes = os.totalmem()): number {
  return Math.max(AUTO_SHARED_BUFFERS_MIN_MB, Math.min(1024, Math.floor(totalMemBytes / 8 / MB)));
}

/** Bytes of the database's own files (base/: tables and indexes), 0 for a directory not created yet. */
export function databaseBytes(dir: string): number {
  let n = 0;
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return; // not there (yet), or removed meanwhile
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) n += fs.statSync(p, { throwIfNoEntry: false })?.size ?? 0;
    }
  };
  walk(path.join(dir, "base"));
  return n;
}

/** shared_buffers in MB for `dir` under `setting` (see the file's comment). */
export function sharedBuffersMb(dir: string, setting: SharedBuffersSetting = "auto", totalMemBytes = os.totalmem()): number {
  if (setting !== "auto") return setting;
  const wanted = Math.ceil((databaseBytes(dir) * 1.25) / (64 * MB)) * 64;
  return Math.min(autoSharedBuffersMaxMb(totalMemBytes), Math.max(AUTO_SHARED_BUFFERS_MIN_MB, wanted));
}

/** Opens (or shares, within this process) the PGlite database in `dir`, creating it if needed. */
export async function openEmbedded(dir: string, logger: Logger, opts: EmbeddedOptions = {}): Promise<EmbeddedHandle> {
  const key = path.resolve(dir);
  await closing.get(key);
  let entry = open.get(key);
  if (!entry) {
    entry = { refs: 0, opening: start(key, logger, opts) };
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

async function start(dir: string, logger: Logger, opts: EmbeddedOptions) {
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const lock = await acquireDataDirLock(lockFileFor(dir), (why) =>
    logger.error("embedded database lock lost: another process could now open the same data and lose writes", { dir, why }),
  );
  try {
    const fresh = !fs.existsSync(path.join(dir, "PG_VERSION"));
    const t0 = performance.now();
    const buffers = sharedBuffersMb(dir, opts.sharedBuffers);
    const pglite = await PGlite.create({
      dataDir: dir,
      extensions: { vector },
      startParams: [...PGlite.defaultStartParams, "-c", `shared_buffers=${buffers}MB`],
    });
    logger.info(fresh ? "embedded database created" : "embedded database opened", {
      dir,
      ms: Math.round(performance.now() - t0),
      shared_buffers_mb: buffers,
    });
    return { pglite, releaseLock: () => lock.release() };
  } catch (err) {
    await lock.release();
    throw err;
  }
}
