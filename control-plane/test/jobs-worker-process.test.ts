// The worker program (control-plane/src/worker.ts, also `npm run jota --
// worker`): it refuses to start without REDIS_URL, saying why; with one, it
// starts its own embedding engine, runs the ingest jobs queued on that Redis
// into the data folder's database, and stops cleanly on SIGTERM.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { Redis } from "ioredis";
import { repoRoot } from "../src/config/paths";
import { IngestQueue } from "../src/jobs/queues";
import { PgVectorStore } from "../src/memory/vector";
import { processGone } from "./helpers/engines";
import { freshDataDir, smallMarkdown, waitForJob } from "./helpers/jobs";
import { freePort } from "../src/free-port";


/** Runs a TypeScript program of the repository; collects its stderr lines. */
function run(script: string, args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, script), ...args], {
    cwd: repoRoot,
    env: { ...process.env, DATABASE_URL: "", REDIS_URL: "", QDRANT_URL: "", JOTA_INFERENCE_URLS: "", JOTA_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  createInterface({ input: child.stderr! }).on("line", (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) (w.re.test(l) ? w.resolve(l) : waiters.push(w));
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    lines,
    exited,
    /** The first stderr line matching `re` (earlier lines included). */
    line(re: RegExp, timeoutMs: number): Promise<string> {
      const seen = lines.find((l) => re.test(l));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no line matching ${re} in ${timeoutMs} ms:\n${lines.join("\n")}`)), timeoutMs);
        waiters.push({ re, resolve: (l) => (clearTimeout(t), resolve(l)) });
        void exited.then((code) => reject(new Error(`exited (${code}) before a line matching ${re}:\n${lines.join("\n")}`)));
      });
    },
  };
}

describe("jobs: the worker process", function () {
  this.timeout(120_000);

  for (const [script, args] of [
    ["control-plane/src/worker.ts", []],
    ["gateway/src/cli.ts", ["worker"]],
  ] as const) {
    it(`${[script, ...args].join(" ")} without REDIS_URL exits 2 and says why`, async () => {
      const p = run(script, [...args], { JOTA_DATA_DIR: freshDataDir() });
      assert.equal(await p.exited, 2);
      assert.match(p.lines.join("\n"), /REDIS_URL is not set\. A separate worker process shares the gateways' Redis.*`npm start` runs a private Redis/);
    });
  }

  let redisServer: ChildProcess | undefined;
  let client: Redis | undefined;
  let worker: ChildProcess | undefined;
  after(async () => {
    worker?.kill("SIGKILL");
    client?.disconnect();
    if (redisServer && redisServer.exitCode === null) {
      const gone = new Promise((r) => redisServer!.once("exit", r));
      redisServer.kill("SIGTERM");
      await gone;
    }
  });

  it("runs the jobs queued on REDIS_URL with its own embedding engine, and stops on SIGTERM", async () => {
    const port = await freePort();
    redisServer = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: ["ignore", "pipe", "ignore"] });
    await new Promise<void>((resolve) => createInterface({ input: redisServer!.stdout! }).on("line", (l) => /Ready to accept/.test(l) && resolve()));
    const url = `redis://127.0.0.1:${port}`;
    client = new Redis(url, { maxRetriesPerRequest: null });
    const queue = new IngestQueue({ connection: client, backoffMs: 5 });

    // Queued before the worker runs: it must find it.
    const text = smallMarkdown(4, "From the worker");
    const { jobId } = await queue.submitIngest({ userId: "alice", source: "w.md", text });

    const dataDir = freshDataDir();
    const p = run("control-plane/src/worker.ts", [], { REDIS_URL: url, JOTA_DATA_DIR: dataDir, JOTA_THREADS: "1" });
    worker = p.child;
    const ready = JSON.parse(await p.line(/"worker ready"/, 90_000)) as { engines: string[]; store: string; concurrency: number };
    assert.match(ready.engines[0]!, /^local 127\.0\.0\.1:\d+$/);
    assert.equal(ready.store, "pgvector");
    assert.equal(ready.concurrency, 1);
    const enginePid = (JSON.parse(await p.line(/"engine":"inference".*"pid"/, 5_000)) as { pid: number }).pid;

    const done = await waitForJob(queue, "alice", jobId);
    assert.equal(done.state, "completed", done.failedReason);

    p.child.kill("SIGTERM");
    assert.equal(await p.exited, 0, p.lines.slice(-10).join("\n"));
    assert.ok(p.lines.some((l) => l.includes('"stopped"')));
    assert.ok(processGone(enginePid), "the worker's engine stopped with it");
    await queue.close();

    // The chunks are in the data folder's own database.
    const store = await PgVectorStore.open({ dataDir: path.join(dataDir, "db") });
    try {
      assert.equal(await store.count(done.result!.collection, { userId: "alice", source: "w.md" }), done.result!.chunks);
    } finally {
      await store.close();
    }
  });
});
