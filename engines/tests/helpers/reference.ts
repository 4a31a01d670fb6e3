// llama.cpp's own tools, built from the same sources, as references for
// fidelity tests and benchmarks.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import net from "node:net";
import { buildBin, requireFile } from "../../../control-plane/test/helpers/engines";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export class LlamaServer {
  private constructor(
    readonly proc: ChildProcess,
    readonly url: string,
  ) {}

  static async start(args: string[]): Promise<LlamaServer> {
    const port = await freePort();
    const proc = spawn(requireFile(buildBin("llama-server")), ["--host", "127.0.0.1", "--port", String(port), ...args], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "";
    proc.stderr!.on("data", (d) => (log = (log + d).slice(-4000)));
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`llama-server exited: ${log}`);
      try {
        const r = await fetch(`${url}/health`);
        if (r.status === 200) return new LlamaServer(proc, url);
      } catch {
        /* not listening yet */
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    proc.kill("SIGKILL");
    throw new Error(`llama-server not healthy in 60 s: ${log}`);
  }

  async post<T>(path: string, body: unknown): Promise<T> {
    const r = await fetch(`${this.url}${path}`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
    if (!r.ok) throw new Error(`llama-server ${path}: ${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  }

  async stop() {
    if (this.proc.exitCode !== null) return;
    const gone = new Promise((r) => this.proc.once("exit", r));
    this.proc.kill("SIGTERM");
    await gone;
  }
}

/** llama-embedding's vectors for `inputs` (one call, JSON output). */
export function llamaEmbedding(model: string, inputs: string[], normalize: boolean): number[][] {
  const sep = "<#jota#>";
  // llama-embedding prints its JSON through llama.cpp's asynchronous logger, and
  // once (in about 30 full runs) a number came out empty ("0.36,,0.81"): the
  // tool's output, not its values, is then unusable, and the tool runs again.
  for (let attempt = 1; ; attempt++) {
    const r = spawnSync(
      requireFile(buildBin("llama-embedding")),
      ["-m", model, "-t", "2", "--embd-separator", sep, "-p", inputs.join(sep), "--embd-normalize", normalize ? "2" : "-1", "--embd-output-format", "json"],
      { encoding: "utf8", maxBuffer: 64 << 20 },
    );
    if (r.status !== 0) throw new Error(`llama-embedding failed: ${r.stderr.slice(-2000)}`);
    let parsed: { data: { index: number; embedding: number[] }[] };
    try {
      parsed = JSON.parse(r.stdout);
    } catch (err) {
      if (attempt < 3) continue;
      throw new Error(`llama-embedding printed malformed JSON ${attempt} times: ${(err as Error).message}`);
    }
    return parsed.data.sort((a, b) => a.index - b.index).map((d) => d.embedding);
  }
}
