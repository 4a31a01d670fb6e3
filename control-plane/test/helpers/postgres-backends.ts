// Runs one behaviour suite against both of Jota's PostgreSQL back-ends:
// embedded PGlite and a real PostgreSQL server (a throw-away cluster).
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { vector } from "@electric-sql/pglite-pgvector";
import { openDatabase, type Database, type DatabaseOptions } from "../../src/db/database";
import { silentLogger } from "../../src/log";
import { repoRoot } from "../../src/config/paths";
import { startPostgres, type PgCluster } from "./postgres";

export type BackendKind = "pglite" | "postgres";

/** The server secret the fixtures open databases with (API keys and device tokens are hashed under it). */
export const TEST_SECRET = "test-secret-0123456789abcdef";

/** Where a test database lives: a PGlite directory or a PostgreSQL URL. */
export type Location = { dataDir: string; url?: undefined } | { url: string; dataDir?: undefined };

export interface BackendFixture {
  readonly kind: BackendKind;
  /** A new, empty database. */
  fresh(): Promise<Location>;
  open(loc: Location, opts?: Partial<DatabaseOptions>): Promise<Database>;
  /** fresh() then open(). */
  openFresh(opts?: Partial<DatabaseOptions>): Promise<Database>;
}

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "jota-db-test-"));
process.once("exit", () => fs.rmSync(scratch, { recursive: true, force: true }));

// initdb takes PGlite seconds; an initialised, empty directory copied per
// test takes milliseconds.
let template: Promise<string> | undefined;
function pgliteTemplate(): Promise<string> {
  template ??= (async () => {
    const dir = path.join(scratch, "template");
    const db = await PGlite.create({ dataDir: dir, extensions: { vector } });
    await db.close();
    return dir;
  })();
  return template;
}

let n = 0;
export async function freshPgliteDir(): Promise<string> {
  const dir = path.join(scratch, `db-${++n}`);
  fs.cpSync(await pgliteTemplate(), dir, { recursive: true });
  return dir;
}

/** Declares `describe(<title> (<backend>))` for each back-end, with its fixture. */
export function describeBackends(title: string, body: (fx: BackendFixture) => void): void {
  for (const kind of ["pglite", "postgres"] as const) {
    describe(`${title} (${kind})`, function () {
      this.timeout(60_000);
      let cluster: PgCluster | undefined;
      const opened: Database[] = [];
      before(async () => {
        if (kind === "postgres") cluster = await startPostgres();
      });
      afterEach(async () => {
        await Promise.all(opened.splice(0).map((db) => db.close()));
      });
      after(async () => {
        await cluster?.stop();
      });

      const fx: BackendFixture = {
        kind,
        fresh: async () => (kind === "pglite" ? { dataDir: await freshPgliteDir() } : { url: await cluster!.createDatabase() }),
        async open(loc, opts = {}) {
          const db = await openDatabase({ logger: silentLogger, secret: TEST_SECRET, ...loc, ...opts });
          opened.push(db);
          return db;
        },
        async openFresh(opts) {
          return fx.open(await fx.fresh(), opts);
        },
      };
      body(fx);
    });
  }
}

export interface EmbeddedChild {
  proc: ChildProcessWithoutNullStreams;
  /** The next JSON line the child prints. */
  next(): Promise<Record<string, unknown>>;
}

const childScript = path.join(path.dirname(fileURLToPath(import.meta.url)), "postgres-embedded-child.ts");

/** Another process on an embedded database (see postgres-embedded-child.ts for the actions). */
export function embeddedChild(dataDir: string, action: "hold" | "write" | "open"): EmbeddedChild {
  const proc = spawn(process.execPath, ["--import", "tsx", childScript, dataDir, action], { cwd: repoRoot, stdio: "pipe" });
  let stderr = "";
  proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
  return {
    proc,
    async next() {
      const r = await lines.next();
      if (r.done) throw new Error(`child exited (${proc.exitCode ?? proc.signalCode}) without answering: ${stderr}`);
      return JSON.parse(r.value) as Record<string, unknown>;
    },
  };
}

export async function killChild(c: EmbeddedChild): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  const gone = once(c.proc, "exit");
  c.proc.kill("SIGKILL");
  await gone;
}
