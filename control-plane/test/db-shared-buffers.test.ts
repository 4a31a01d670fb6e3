// The embedded database's page cache (shared_buffers, embedded.ts): sized at
// open to the data on disk unless JOTA_PG_SHARED_BUFFERS says otherwise, and
// what PostgreSQL itself then reports (SHOW shared_buffers) on a real PGlite.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ConfigError, loadConfig } from "../src/config/config";
import { databaseOptions, openDatabase } from "../src/db/database";
import { AUTO_SHARED_BUFFERS_MIN_MB, autoSharedBuffersMaxMb, databaseBytes, sharedBuffersMb } from "../src/db/embedded";
import { silentLogger } from "../src/log";

const MB = 1024 * 1024;
const GB = 1024 * MB;

describe("embedded database: shared_buffers", function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  const scratch = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "jota-sb-"));
    dirs.push(d);
    return d;
  };
  after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  /** An empty file of `bytes` (sparse: nothing is written). */
  const sized = (file: string, bytes: number) => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, "");
    fs.truncateSync(file, bytes);
  };
  /** A data directory whose base/ holds files of these sizes. */
  const withFiles = (sizes: number[]) => {
    const d = scratch();
    sizes.forEach((n, i) => sized(path.join(d, "base", "5", String(16384 + i)), n));
    sized(path.join(d, "pg_wal", "000000010000000000000001"), 64 * MB); // outside base/: not counted
    return d;
  };

  it("auto: 128 MB for a new or small database, 1.25x its files rounded up to 64 MB, capped at 1 GB or an eighth of the memory", () => {
    assert.equal(sharedBuffersMb(path.join(scratch(), "not-created-yet")), AUTO_SHARED_BUFFERS_MIN_MB);
    assert.equal(sharedBuffersMb(withFiles([40 * MB])), 128);
    const d = withFiles([195 * MB, 156 * MB, 8 * MB]); // an index, its table, the rest
    assert.equal(databaseBytes(d), 359 * MB);
    assert.equal(sharedBuffersMb(d, "auto", 24 * GB), 512, "ceil(359 * 1.25 / 64) * 64");
    assert.equal(sharedBuffersMb(withFiles([3 * GB]), "auto", 24 * GB), 1024, "at most 1 GB");
    assert.equal(sharedBuffersMb(withFiles([3 * GB]), "auto", 2 * GB), 256, "an eighth of a 2 GB machine");
    assert.equal(autoSharedBuffersMaxMb(512 * MB), AUTO_SHARED_BUFFERS_MIN_MB, "never below the old default");
  });

  it("a size set outright is used as it is, whatever the data", () => {
    assert.equal(sharedBuffersMb(withFiles([3 * GB]), 64), 64);
  });

  it("JOTA_PG_SHARED_BUFFERS: auto, MB or GB within [16MB, 1536MB]; anything else names the variable", () => {
    const opts = (v?: string) => databaseOptions(loadConfig(v === undefined ? {} : { JOTA_PG_SHARED_BUFFERS: v }), silentLogger).sharedBuffers;
    assert.deepEqual([opts(), opts("auto"), opts("512MB"), opts("1GB"), opts("256 mb")], ["auto", "auto", 512, 1024, 256]);
    for (const bad of ["lots", "512", "8MB", "2GB", "-1MB"])
      assert.throws(() => opts(bad), (e: Error) => e instanceof ConfigError && e.variable === "JOTA_PG_SHARED_BUFFERS", bad);
  });

  it("PGlite runs with what was chosen: auto on a new database, and a set size", async () => {
    for (const [setting, want] of [["auto", "128MB"], [256, "256MB"]] as const) {
      const db = await openDatabase({ dataDir: path.join(scratch(), "db"), sharedBuffers: setting, logger: silentLogger });
      try {
        const rows = await db.sql.query<{ shared_buffers: string }>("SHOW shared_buffers");
        assert.equal(rows[0]!.shared_buffers, want);
      } finally {
        await db.close();
      }
    }
  });
});
