// The embedded database is one process's: a second process is refused with
// a clear error, the lock goes with the process that held it (even killed),
// and within one process the same directory is opened once and shared.
import assert from "node:assert/strict";
import { once } from "node:events";
import { openDatabase } from "../src/db/database";
import { DataDirLockedError } from "../src/db/lock";
import { silentLogger } from "../src/log";
import { embeddedChild as child, freshPgliteDir, killChild as kill } from "./helpers/postgres-backends";

describe("embedded database lock", function () {
  this.timeout(60_000);

  it("refuses a second process, naming the one that holds the data", async () => {
    const dir = await freshPgliteDir();
    const holder = child(dir, "hold");
    try {
      assert.deepEqual(await holder.next(), { ready: true });
      const second = child(dir, "open");
      const { error } = (await second.next()) as { error: { name: string; message: string } };
      assert.equal(error.name, "DataDirLockedError");
      assert.match(error.message, new RegExp(`${dir}\\.lock is held by process ${holder.proc.pid} on `));
      assert.match(error.message, /allows one process at a time.*DATABASE_URL/);
      await once(second.proc, "exit");
      assert.equal(second.proc.exitCode, 1);

      // This process is refused the same way.
      await assert.rejects(openDatabase({ dataDir: dir, logger: silentLogger }), DataDirLockedError);
    } finally {
      await kill(holder);
    }
  });

  it("is released when the holder is killed (SIGKILL): no stale lock", async () => {
    const dir = await freshPgliteDir();
    const holder = child(dir, "hold");
    assert.deepEqual(await holder.next(), { ready: true });
    await kill(holder);
    const db = await openDatabase({ dataDir: dir, logger: silentLogger });
    await db.close();
  });

  it("is released by close(), and another process can then open the data", async () => {
    const dir = await freshPgliteDir();
    const db = await openDatabase({ dataDir: dir, logger: silentLogger });
    await db.close();
    const next = child(dir, "open");
    assert.deepEqual(await next.next(), { opened: true });
    await once(next.proc, "exit");
  });

  it("shares one PGlite instance per directory within a process", async () => {
    const dir = await freshPgliteDir();
    const a = await openDatabase({ dataDir: dir, logger: silentLogger });
    const b = await openDatabase({ dataDir: dir, logger: silentLogger });
    try {
      const user = await a.repos.users.create({ username: "shared" });
      assert.equal((await b.repos.users.get(user.id)).username, "shared");
      await a.close();
      // b still works: the instance closes with its last user.
      assert.equal((await b.repos.users.get(user.id)).username, "shared");
    } finally {
      await a.close();
      await b.close();
    }
    const other = child(dir, "open");
    assert.deepEqual(await other.next(), { opened: true }, "the lock is released once both closed");
    await once(other.proc, "exit");
  });
});
