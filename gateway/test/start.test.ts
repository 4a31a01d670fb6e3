// `npm start`'s process: starts engines and the gateway, serves health, and
// stops everything on Ctrl-C; even a SIGKILL of it leaves no engine behind.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { repoRoot } from "@jota/control-plane/config/paths";

/** The engine processes (jota-inference, jota-transcription) whose parent is `pid`. */
function engineChildren(pid: number): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid && comm.startsWith("jota-")) out.push(Number(entry));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

interface Started {
  proc: ChildProcess;
  url: string;
  lines: Record<string, unknown>[];
}

async function startJota(dataDir: string): Promise<Started> {
  const proc = spawn(process.execPath, ["--import", "tsx", "gateway/src/main.ts"], {
    cwd: repoRoot,
    env: {
      ...process.env,
      JOTA_HTTP_PORT: "0",
      JOTA_INFERENCE_PORT: "0",
      JOTA_TRANSCRIPTION_PORT: "0",
      JOTA_GRPC_PORT: "0",
      JOTA_DATA_DIR: dataDir,
      JOTA_THREADS: "1",
      JOTA_CTX_SIZE: "512",
      JOTA_SLOTS: "1",
      JOTA_ENGINE_TOKEN: "",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: Record<string, unknown>[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("jota did not print 'listening' in 90 s")), 90_000);
    createInterface({ input: proc.stderr! }).on("line", (l) => {
      try {
        const j = JSON.parse(l);
        lines.push(j);
        if (j.msg === "listening" && typeof j.http === "string") {
          clearTimeout(timer);
          resolve(j.http);
        }
      } catch {
        /* not JSON */
      }
    });
    proc.once("exit", (code) => reject(new Error(`jota exited early with ${code}`)));
  });
  return { proc, url, lines };
}

describe("npm start process", function () {
  this.timeout(180_000);
  let dataDir: string;
  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "jota-start-"));
  });
  afterEach(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  it("serves health with the database and both engines, makes the first admin key, and stops cleanly on SIGINT", async () => {
    const { proc, url, lines } = await startJota(dataDir);
    const engines = engineChildren(proc.pid!);
    assert.equal(engines.length, 2, `expected 2 engine children, got ${engines}`);

    assert.ok(lines.some((l) => l.level === "warn" && /GENERATED TEST MODELS/.test(String(l.msg))));
    const live = await fetch(`${url}/health/live`);
    assert.equal(live.status, 200);
    const ready = await fetch(`${url}/health/ready`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: "ok" });
    // The deep health needs an admin credential: the first start wrote one to the data folder.
    assert.equal((await fetch(`${url}/health`)).status, 401);
    const keyFile = path.join(dataDir, "admin-key");
    assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
    const adminKey = fs.readFileSync(keyFile, "utf8").trim();
    const deep = await fetch(`${url}/health`, { headers: { authorization: `Bearer ${adminKey}` } });
    assert.equal(deep.status, 200);
    const body = (await deep.json()) as { status: string; components: { name: string; kind: string; status: string }[] };
    assert.equal(body.status, "ok");
    assert.deepEqual(body.components.map((c) => [c.kind, c.status]).sort(), [
      ["database", "ok"],
      ["inference", "ok"],
      ["redis", "ok"],
      ["transcription", "ok"],
    ]);
    const unknown = await fetch(`${url}/nope`);
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as { error: { code: string } }).error.code, "not_found");

    const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
    proc.kill("SIGINT");
    assert.equal(await exited, 0);
    assert.ok(await waitFor(() => engines.every((p) => !alive(p)), 5000), "engines outlived jota");
  });

  it("engines exit by themselves when jota is killed with SIGKILL", async () => {
    const { proc } = await startJota(dataDir);
    const engines = engineChildren(proc.pid!);
    assert.equal(engines.length, 2);
    proc.kill("SIGKILL");
    assert.ok(await waitFor(() => engines.every((p) => !alive(p)), 10_000), "orphaned engines after SIGKILL");
  });
});
