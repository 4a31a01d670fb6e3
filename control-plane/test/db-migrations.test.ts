// Migrations are applied at start-up with deploy semantics, recorded the way
// the Prisma CLI records them, and a failing one is reported, not applied.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { MigrationError, readMigrations } from "../src/db/migrate";
import { defaultMigrationsDir } from "../src/db/database";
import { repoRoot } from "../src/config/paths";
import { describeBackends, freshPgliteDir } from "./helpers/postgres-backends";
import { startPostgres, type PgCluster } from "./helpers/postgres";

const run = promisify(execFile);

interface MigrationRow {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
  logs: string | null;
  applied_steps_count: number;
}

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "jota-migrations-"));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** A migrations folder with the real migrations plus extra ones. */
function migrationsWith(extra: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(scratch, "set-"));
  fs.cpSync(defaultMigrationsDir, dir, { recursive: true });
  for (const [name, sql] of Object.entries(extra)) {
    fs.mkdirSync(path.join(dir, name));
    fs.writeFileSync(path.join(dir, name, "migration.sql"), sql);
  }
  return dir;
}

const rows = (db: { prisma: { $queryRawUnsafe<T>(q: string): Promise<T> } }) =>
  db.prisma.$queryRawUnsafe<MigrationRow[]>(
    `SELECT migration_name, checksum, finished_at, rolled_back_at, logs, applied_steps_count FROM "_prisma_migrations" ORDER BY started_at`,
  );

const tableExists = async (db: { prisma: { $queryRawUnsafe<T>(q: string): Promise<T> } }, name: string) =>
  (await db.prisma.$queryRawUnsafe<Array<{ n: number }>>(`SELECT count(*)::int AS n FROM pg_tables WHERE tablename = '${name}'`))[0]!.n === 1;

describeBackends("migrations", (fx) => {
  it("applies every migration to an empty database, recorded like `prisma migrate deploy`", async () => {
    const local = readMigrations(defaultMigrationsDir);
    assert.ok(local.length >= 1);
    const db = await fx.openFresh();
    assert.deepEqual(db.migrations.applied, local.map((m) => m.name));
    const recorded = await rows(db);
    assert.deepEqual(
      recorded.map((r) => [r.migration_name, r.checksum, r.finished_at !== null, r.rolled_back_at, r.logs, r.applied_steps_count]),
      local.map((m) => [m.name, m.checksum, true, null, null, 1]),
    );
    for (const t of ["users", "api_keys", "devices", "device_tokens", "conversations", "messages", "requests", "tool_calls"])
      assert.ok(await tableExists(db, t), `table ${t}`);
  });

  it("applies nothing the second time", async () => {
    const loc = await fx.fresh();
    await (await fx.open(loc)).close();
    const again = await fx.open(loc);
    assert.deepEqual(again.migrations.applied, []);
    assert.equal((await rows(again)).length, readMigrations(defaultMigrationsDir).length);
  });

  it("applies only the pending ones, in name order", async () => {
    const loc = await fx.fresh();
    await (await fx.open(loc)).close();
    const dir = migrationsWith({
      "99990102000000_second": `ALTER TABLE "notes" ADD COLUMN "body" TEXT;`,
      "99990101000000_first": `CREATE TABLE "notes" ("id" SERIAL PRIMARY KEY);`,
    });
    const db = await fx.open(loc, { migrationsDir: dir });
    assert.deepEqual(db.migrations.applied, ["99990101000000_first", "99990102000000_second"]);
    await db.prisma.$executeRawUnsafe(`INSERT INTO "notes" ("body") VALUES ('x')`);
  });

  it("reports a failing migration as failed and applies none of it; the next start retries it", async () => {
    const loc = await fx.fresh();
    const dir = migrationsWith({
      "99990101000000_good": `CREATE TABLE "good" ("id" INT);`,
      // The first statement succeeds on its own; the second fails.
      "99990102000000_bad": `CREATE TABLE "half" ("id" INT);\nINSERT INTO "missing_table" VALUES (1);`,
    });
    await assert.rejects(fx.open(loc, { migrationsDir: dir }), (err: unknown) => {
      assert.ok(err instanceof MigrationError, String(err));
      assert.equal(err.migration, "99990102000000_bad");
      assert.match(err.message, /migration 99990102000000_bad failed and was rolled back: .*missing_table/);
      return true;
    });

    // A clean set of migrations opens the database to inspect it.
    const inspect = await fx.open(loc);
    assert.equal(await tableExists(inspect, "good"), true);
    assert.equal(await tableExists(inspect, "half"), false, "nothing of the failed migration is applied");
    const bad = (await rows(inspect)).find((r) => r.migration_name === "99990102000000_bad")!;
    assert.equal(bad.finished_at, null, "recorded as failed, the way Prisma records it");
    assert.equal(bad.applied_steps_count, 0);
    assert.match(bad.logs ?? "", /missing_table/);
    await inspect.close();

    fs.writeFileSync(path.join(dir, "99990102000000_bad", "migration.sql"), `CREATE TABLE "half" ("id" INT);`);
    const fixed = await fx.open(loc, { migrationsDir: dir });
    assert.deepEqual(fixed.migrations.applied, ["99990102000000_bad"]);
    const attempts = (await rows(fixed)).filter((r) => r.migration_name === "99990102000000_bad");
    assert.equal(attempts.length, 2);
    assert.ok(attempts[0]!.rolled_back_at, "the failed attempt is marked rolled back");
    assert.ok(attempts[1]!.finished_at);
  });

  it(fx.kind === "pglite" ? "has pgvector (PGlite ships it)" : "runs without pgvector (Debian's PostgreSQL 15 lacks it)", async () => {
    const db = await fx.openFresh();
    const ext = await db.prisma.$queryRawUnsafe<unknown[]>(`SELECT 1 FROM pg_extension WHERE extname = 'vector'`);
    if (fx.kind === "pglite") {
      assert.equal(ext.length, 1);
      const [r] = await db.prisma.$queryRawUnsafe<Array<{ d: number }>>(`SELECT ('[1,2,3]'::vector <-> '[1,2,4]'::vector)::float8 AS d`);
      assert.equal(r!.d, 1);
    } else {
      assert.equal(ext.length, 0);
    }
  });
});

describe("migrations and the Prisma CLI", function () {
  this.timeout(120_000);
  let cluster: PgCluster;
  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });

  const prisma = (args: string[], env: Record<string, string>) =>
    run(path.join(repoRoot, "node_modules", ".bin", "prisma"), args, {
      cwd: repoRoot,
      env: { ...process.env, DATABASE_URL: "", ...env },
      timeout: 90_000,
    });

  it("`prisma migrate status` reads what start-up applied (PostgreSQL)", async () => {
    const url = await cluster.createDatabase();
    const { openDatabase } = await import("../src/db/database");
    const { silentLogger } = await import("../src/log");
    await (await openDatabase({ url, logger: silentLogger })).close();
    const { stdout } = await prisma(["migrate", "status"], { DATABASE_URL: url });
    assert.match(stdout, /Database schema is up to date/);
  });

  it("the committed migrations produce exactly prisma/schema.prisma (no migration missing)", async () => {
    // The shadow database is an in-memory PGlite, with pgvector like the real one.
    const { stdout } = await prisma(
      ["migrate", "diff", "--from-migrations", "prisma/migrations", "--to-schema-datamodel", "prisma/schema.prisma", "--script"],
      { JOTA_DATA_DIR: path.dirname(await freshPgliteDir()) + "/cli" },
    );
    // Prisma's diff from a migrations folder never sees extensions: it
    // proposes CREATE EXTENSION even after its own generated migration.
    const missing = stdout
      .split("\n")
      .filter((l) => l.trim() !== "" && !l.startsWith("--") && l !== `CREATE EXTENSION IF NOT EXISTS "vector";`);
    assert.deepEqual(missing, [], `schema.prisma has changes no migration makes:\n${stdout}`);
  });
});
