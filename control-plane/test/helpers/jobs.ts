// The parts of an ingest job, all real, for the jobs tests: a private
// redis-server (its own data folder), jota-inference with the embedding test
// model (tiny-embed.gguf) behind an EnginePool, and pgvector on a fresh
// embedded PGlite.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { EngineProcess } from "../../src/engines/process";
import { EnginePool } from "../../src/engines/pool";
import { openRedis, type RedisHandle } from "../../src/jobs/redis";
import type { IngestJobState, IngestJobStatus, IngestQueue } from "../../src/jobs/queues";
import { silentLogger } from "../../src/log";
import { PgVectorStore } from "../../src/memory/vector";
import { freshPgliteDir } from "./postgres-backends";
import { requireFile, startEngine, testModel } from "./engines";

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "jota-jobs-test-"));
process.once("exit", () => fs.rmSync(scratch, { recursive: true, force: true }));
let n = 0;

/** A new, empty folder to be a JOTA_DATA_DIR. */
export function freshDataDir(): string {
  const dir = path.join(scratch, `data-${++n}`);
  fs.mkdirSync(dir);
  return dir;
}

export function startRedis(dataDir = freshDataDir()): Promise<RedisHandle> {
  return openRedis({ dataDir, logger: silentLogger });
}

/** An inference engine that only embeds (one thread: see ingest-markdown.test.ts). */
export function startEmbedEngine(): Promise<EngineProcess> {
  return startEngine({ kind: "inference", args: ["--embed-model", requireFile(testModel("tiny-embed.gguf")), "--threads", "1"] });
}

/** A pool on these inference engines; waits until one serves unless `wait` is false. */
export async function poolOf(addresses: string[], wait = true): Promise<EnginePool> {
  const pool = new EnginePool({ inference: addresses, transcription: [], token: "", logger: silentLogger, infoIntervalMs: 200, backoffInitialMs: 50, backoffMaxMs: 500 });
  if (wait) await pool.ready("inference", 30_000);
  return pool;
}

export async function openStore(): Promise<PgVectorStore> {
  return PgVectorStore.open({ dataDir: await freshPgliteDir() });
}

/** Polls the job until it is in one of `states`; fails after `timeoutMs` with its last status. */
export async function waitForJob(
  queue: IngestQueue,
  userId: string,
  jobId: string,
  states: IngestJobState[] = ["completed", "failed"],
  timeoutMs = 60_000,
): Promise<IngestJobStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await queue.getJob(userId, jobId);
    if (s && states.includes(s.state)) return s;
    if (Date.now() > deadline) throw new Error(`job ${jobId} not ${states.join("/")} after ${timeoutMs} ms: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A small Markdown document: `sections` numbered sections, so no two chunks are alike. */
export function smallMarkdown(sections = 6, title = "Notes"): string {
  const parts = [`# ${title}\n`];
  for (let s = 1; s <= sections; s++) {
    parts.push(
      `## Section ${s}\n\n` +
        `This is paragraph one of section ${s}. It talks about lamps, kettles and the weather in town ${s}. ` +
        `The second sentence adds a few more words so that the section needs more than one chunk.\n\n` +
        `- item ${s}.1: turn the lights off at ${s} pm\n- item ${s}.2: water the plants\n\n` +
        "```sh\necho section " + s + "\n```\n",
    );
  }
  return parts.join("\n");
}
