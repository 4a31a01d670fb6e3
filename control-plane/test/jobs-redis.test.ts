// The Redis behind the job queues: a private redis-server when REDIS_URL is
// not set (started, password-protected, stopped, one per data folder, started
// again after a crash, dying with its parent), or a given URL (connected, or a clear error that does
// not show the password).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { ConfigError, loadConfig } from "../src/config/config";
import { openRedis, RedisError } from "../src/jobs/redis";
import { repoRoot } from "../src/config/paths";
import { silentLogger } from "../src/log";
import { processGone } from "./helpers/engines";
import { freshDataDir, startRedis } from "./helpers/jobs";
import { freePort } from "../src/free-port";

const childScript = path.join(path.dirname(fileURLToPath(import.meta.url)), "helpers", "redis-child.ts");

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!processGone(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}


/** One inline command on a bare socket (no client, no password); its first reply line. */
function rawCommand(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1", () => sock.write(command + "\r\n"));
    sock.once("error", reject);
    createInterface({ input: sock }).once("line", (l) => {
      sock.destroy();
      resolve(l);
    });
  });
}

async function rejectsWith(p: Promise<unknown>, message: RegExp, notShown?: string) {
  await assert.rejects(p, (e: Error) => {
    assert.ok(e instanceof RedisError, `RedisError expected, got ${e}`);
    assert.match(e.message, message);
    if (notShown) assert.ok(!e.message.includes(notShown), `the message shows the password: ${e.message}`);
    return true;
  });
}

describe("jobs: Redis, private or by URL", function () {
  this.timeout(30_000);

  it("without a URL, starts a private redis-server in <dataDir>/redis and stops it on close", async () => {
    const dataDir = freshDataDir();
    const redis = await startRedis(dataDir);
    const pid = redis.server!.pid!;
    try {
      assert.ok(!processGone(pid));
      assert.equal(await redis.connection.ping(), "PONG");
      assert.equal(redis.connection.options.maxRetriesPerRequest, null);
      await redis.connection.set("jota:probe", "1");
      assert.ok(fs.existsSync(path.join(dataDir, "redis", "appendonlydir")), "the append-only file is in the data folder");
      const flat = (await redis.connection.config("GET", "*")) as string[];
      const conf: Record<string, string> = {};
      for (let i = 0; i < flat.length; i += 2) conf[flat[i]!] = flat[i + 1]!;
      assert.equal(conf.appendonly, "yes");
      assert.equal(conf.appendfsync, "always");
      assert.equal(conf.save, "");
      assert.equal(conf.bind, "127.0.0.1");
      assert.equal(conf["protected-mode"], "yes");

      // Loopback only, and not without its password.
      assert.match(await rawCommand(redis.server!.port, "GET jota:probe"), /^-NOAUTH/);

      // One private server per data folder.
      await rejectsWith(startRedis(dataDir), /the private Redis of .* is in use by process \d+ .*REDIS_URL/);
    } finally {
      await redis.close();
    }
    assert.ok(processGone(pid), "redis-server has exited once close() resolves");

    // The folder is free again, and the data is still there.
    const again = await startRedis(dataDir);
    try {
      assert.equal(await again.connection.get("jota:probe"), "1");
    } finally {
      await again.close();
    }
  });

  it("a private redis-server that crashes is started again, with its data, and commands wait for it", async () => {
    const redis = await startRedis();
    try {
      await redis.connection.set("jota:kept", "yes");
      const first = redis.server!.pid!;
      process.kill(first, "SIGKILL"); // as a crash: not through restart()
      // Sent while it is down: waits on the connection, answered by the new server.
      assert.equal(await redis.connection.get("jota:kept"), "yes");
      assert.ok(processGone(first));
      assert.notEqual(redis.server!.pid, first);
      assert.ok(!processGone(redis.server!.pid!));
    } finally {
      await redis.close();
    }
  });

  it("the private redis-server dies with its parent, even one killed with SIGKILL", async () => {
    const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", childScript, freshDataDir()], { cwd: repoRoot, stdio: ["ignore", "pipe", "inherit"] });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).once("line", resolve);
        child.once("exit", (code) => reject(new Error(`the child exited (code ${code}) before its Redis was ready`)));
      });
      const { pid } = JSON.parse(line) as { pid: number };
      assert.ok(!processGone(pid));
      child.kill("SIGKILL");
      assert.ok(await waitGone(pid, 10_000), `redis-server ${pid} outlived its parent`);
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("with a URL, connects to that Redis; a wrong password or an unreachable one is a clear error that hides the password", async () => {
    const port = await freePort();
    const server = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", "s3cret"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    try {
      await new Promise<void>((resolve) => createInterface({ input: server.stdout! }).on("line", (l) => /Ready to accept/.test(l) && resolve()));
      const redis = await openRedis({ url: `redis://:s3cret@127.0.0.1:${port}/2`, logger: silentLogger });
      assert.equal(redis.server, undefined);
      assert.equal(redis.location, `redis://:***@127.0.0.1:${port}/2`);
      assert.equal(await redis.connection.ping(), "PONG");
      assert.equal(redis.connection.options.db, 2);
      assert.equal(redis.connection.options.maxRetriesPerRequest, null);
      await redis.close();

      const t0 = Date.now();
      await rejectsWith(
        openRedis({ url: `redis://:wrong-one@127.0.0.1:${port}`, logger: silentLogger }),
        new RegExp(`Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port} refused the connection: WRONGPASS.*\\(REDIS_URL\\)`),
        "wrong-one",
      );
      assert.ok(Date.now() - t0 < 5000, "a refused password fails at once, not after the timeout");
    } finally {
      const gone = new Promise((r) => server.once("exit", r));
      server.kill("SIGTERM");
      await gone;
    }

    const closed = await freePort();
    await rejectsWith(
      openRedis({ url: `redis://:hidden@127.0.0.1:${closed}`, logger: silentLogger, timeoutMs: 500 }),
      new RegExp(`cannot connect to Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${closed} within 500 ms: connect ECONNREFUSED .*\\(REDIS_URL\\)`),
      "hidden",
    );
    await rejectsWith(openRedis({ url: "localhost:6379", logger: silentLogger }), /REDIS_URL localhost:6379 is not a redis:\/\/ or rediss:\/\/ URL/);
    await rejectsWith(openRedis({ url: "not a url", logger: silentLogger }), /REDIS_URL is not a URL/);
  });

  it("REDIS_URL and JOTA_JOB_CONCURRENCY: defaults, and bad values named at start-up", () => {
    const c = loadConfig({}, () => "t");
    assert.deepEqual(c.jobs, { redisUrl: undefined, concurrency: 1 });
    assert.deepEqual(loadConfig({ REDIS_URL: "redis://:pw@redis:6379/1", JOTA_JOB_CONCURRENCY: "4" }, () => "t").jobs, {
      redisUrl: "redis://:pw@redis:6379/1",
      concurrency: 4,
    });
    for (const [env, variable, msg] of [
      [{ REDIS_URL: "localhost:6379" }, "REDIS_URL", /not a redis:\/\/ or rediss:\/\/ URL/],
      [{ REDIS_URL: "redis ://x" }, "REDIS_URL", /is not a URL/],
      [{ JOTA_JOB_CONCURRENCY: "0" }, "JOTA_JOB_CONCURRENCY", /outside \[1, 1024\]/],
      [{ JOTA_JOB_CONCURRENCY: "two" }, "JOTA_JOB_CONCURRENCY", /not an integer/],
    ] as const)
      assert.throws(
        () => loadConfig(env, () => "t"),
        (e: Error) => e instanceof ConfigError && e.variable === variable && msg.test(e.message),
        JSON.stringify(env),
      );
  });

  it("without redis-server installed, says how to get it", async () => {
    await rejectsWith(
      openRedis({ dataDir: freshDataDir(), binary: "/nonexistent/redis-server", logger: silentLogger }),
      /\/nonexistent\/redis-server is not installed, and REDIS_URL is not set: run `npm start` or `npm run setup`/,
    );
  });
});
