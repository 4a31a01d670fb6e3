// Which database the configuration selects: PostgreSQL with DATABASE_URL,
// the embedded one in JOTA_DATA_DIR/db without it.
import assert from "node:assert/strict";
import path from "node:path";
import { ConfigError, loadConfig } from "../src/config/config";
import { repoRoot } from "../src/config/paths";
import { databaseOptions } from "../src/db/database";
import { silentLogger } from "../src/log";

describe("database configuration", () => {
  it("defaults to the embedded database in JOTA_DATA_DIR/db", () => {
    const opts = databaseOptions(loadConfig({ JOTA_DATA_DIR: "var/jota" }), silentLogger);
    assert.deepEqual([opts.url, opts.dataDir], [undefined, path.join(repoRoot, "var/jota/db")]);
  });

  it("uses PostgreSQL when DATABASE_URL is set", () => {
    const url = "postgresql://jota:secret@db:5432/jota";
    const opts = databaseOptions(loadConfig({ DATABASE_URL: url }), silentLogger);
    assert.deepEqual([opts.url, opts.dataDir], [url, undefined]);
  });

  it("rejects a DATABASE_URL that is not PostgreSQL's", () => {
    assert.throws(
      () => loadConfig({ DATABASE_URL: "mysql://x@y/z" }),
      (e: Error) => e instanceof ConfigError && e.variable === "DATABASE_URL" && /not a postgres/.test(e.message),
    );
  });

  it("rejects a JOTA_ROUTER_MODEL that is not on or off", () => {
    assert.throws(() => loadConfig({ JOTA_ROUTER_MODEL: "yes" }), (e: Error) => e instanceof ConfigError && e.variable === "JOTA_ROUTER_MODEL");
  });
});
