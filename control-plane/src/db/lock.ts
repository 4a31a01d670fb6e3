// The embedded database belongs to one process at a time. Two processes on
// one PGlite directory get no error from PGlite and silently lose writes, so
// the directory is guarded by an exclusive lock held for as long as it is open.
//
// The lock is a kernel flock(2) on `<dir>.lock`, held by a small helper
// process (`flock` from util-linux running `cat`) whose stdin is a pipe from
// this process. Node has no flock API; a helper gives the kernel's semantics
// anyway: when this process dies, SIGKILL included, the pipe closes, the
// helper exits and the kernel drops the lock, so a crash never leaves a stale
// lock to clean up and a reused PID cannot fool the check.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import type { Socket } from "node:net";
import os from "node:os";

/** Exit code the helper uses when another process holds the lock. */
const CONFLICT = 75;

export interface LockHolder {
  pid: number;
  host: string;
  since: string;
}

export class DataDirLockedError extends Error {
  constructor(
    readonly lockFile: string,
    readonly holder: LockHolder | undefined,
  ) {
    const who = holder ? `process ${holder.pid} on ${holder.host} (since ${holder.since})` : "another process";
    super(
      `${lockFile} is held by ${who}: the embedded database allows one process at a time. ` +
        `Stop that process, or run every process against PostgreSQL (DATABASE_URL).`,
    );
    this.name = "DataDirLockedError";
  }
}

export interface DataDirLock {
  readonly lockFile: string;
  /** Drops the lock; resolves once the helper holding it has exited. */
  release(): Promise<void>;
}

/**
 * Takes the lock or fails at once with DataDirLockedError (never waits: a
 * second server on the same data must be told, not queued).
 * `onLost` is called if the helper dies while the lock is held (someone killed
 * it): the database is then unprotected and the caller should say so loudly.
 */
export async function acquireDataDirLock(lockFile: string, onLost: (why: string) => void): Promise<DataDirLock> {
  fs.closeSync(fs.openSync(lockFile, "a")); // flock needs the file; "a" never truncates a holder's note
  const helper = spawn(
    "flock",
    ["--exclusive", "--nonblock", "--conflict-exit-code", String(CONFLICT), lockFile, "sh", "-c", "echo locked; exec cat >/dev/null"],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  let stderr = "";
  helper.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));

  const outcome = await new Promise<"locked" | { code: number | null; signal: NodeJS.Signals | null } | Error>((resolve) => {
    helper.once("error", (err) => resolve(err));
    helper.stdout!.once("data", () => resolve("locked"));
    helper.once("exit", (code, signal) => resolve({ code, signal }));
  });
  if (outcome instanceof Error) {
    const missing = (outcome as NodeJS.ErrnoException).code === "ENOENT";
    throw new Error(
      missing
        ? "cannot lock the embedded database: the `flock` command (Debian package util-linux) is not installed"
        : `cannot lock the embedded database: ${outcome.message}`,
    );
  }
  if (outcome !== "locked") {
    if (outcome.code === CONFLICT) throw new DataDirLockedError(lockFile, readHolder(lockFile));
    throw new Error(`cannot lock ${lockFile}: flock exited (${outcome.signal ?? `code ${outcome.code}`}) ${stderr.trim()}`);
  }

  const holder: LockHolder = { pid: process.pid, host: os.hostname(), since: new Date().toISOString() };
  fs.writeFileSync(lockFile, JSON.stringify(holder) + "\n");
  // The lock must not keep this process alive (the Prisma CLI never closes
  // its database): a process that ends without releasing it still drops the
  // lock, since its end closes the pipe.
  helper.unref();
  for (const s of [helper.stdin, helper.stdout, helper.stderr]) (s as Socket).unref();
  return new HeldLock(lockFile, helper, onLost);
}

class HeldLock implements DataDirLock {
  private released = false;
  private readonly exited: Promise<void>;

  constructor(
    readonly lockFile: string,
    private readonly helper: ChildProcess,
    onLost: (why: string) => void,
  ) {
    this.exited = new Promise((resolve) =>
      helper.once("exit", (code, signal) => {
        if (!this.released) onLost(`the process holding ${lockFile} exited (${signal ?? `code ${code}`})`);
        resolve();
      }),
    );
  }

  async release(): Promise<void> {
    if (this.released) return this.exited;
    this.released = true;
    // Truncate the note first: once the helper is gone another process may
    // take the lock and write its own.
    fs.writeFileSync(this.lockFile, "");
    this.helper.stdin!.end(); // cat sees EOF, exits, and flock drops the lock
    return this.exited;
  }
}

function readHolder(lockFile: string): LockHolder | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(lockFile, "utf8")) as Partial<LockHolder>;
    return typeof v.pid === "number" && typeof v.host === "string" && typeof v.since === "string"
      ? { pid: v.pid, host: v.host, since: v.since }
      : undefined;
  } catch {
    return undefined; // empty (holder released, or mid-write): the message then says "another process"
  }
}
