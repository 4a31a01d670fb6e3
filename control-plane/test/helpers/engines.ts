// Starts real engines (built binaries, generated test models) for tests, on
// 127.0.0.1 with a free port, and stops them afterwards.
import fs from "node:fs";
import path from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { EngineProcess, type Logger, silentLogger } from "../../src/index";
import { defaultBuildDir, testModelsDir } from "../../src/config/paths";

export const buildBin = (name: string) => path.join(process.env.JOTA_BUILD_DIR ?? defaultBuildDir, "bin", name);
export const testModel = (name: "tiny-chat.gguf" | "tiny-embed.gguf" | "tiny-whisper.bin" | "bench-chat.gguf" | "tiny-mamba.gguf") =>
  path.join(testModelsDir, name);

/** Fails loudly (never skips) when set-up did not produce what tests need. */
export function requireFile(p: string): string {
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: run \`npm run setup\` first`);
  return p;
}

export interface StartOptions {
  kind: "inference" | "transcription";
  args?: string[];
  token?: string;
  logger?: Logger;
  restart?: boolean;
}

export async function startEngine(opts: StartOptions): Promise<EngineProcess> {
  const inference = opts.kind === "inference";
  const binary = requireFile(buildBin(inference ? "jota-inference" : "jota-transcription"));
  const args = opts.args ?? (inference
    ? ["--model", requireFile(testModel("tiny-chat.gguf")), "--threads", "2", "--slots", "2", "--ctx-size", "1024"]
    : ["--model", requireFile(testModel("tiny-whisper.bin")), "--threads", "2"]);
  const engine = new EngineProcess({
    name: opts.kind,
    binary,
    args: ["--listen", "127.0.0.1:0", ...args],
    env: opts.token ? { JOTA_ENGINE_TOKEN: opts.token } : { JOTA_ENGINE_TOKEN: "" },
    healthService: inference ? "jota.v1.Inference" : "jota.v1.Transcription",
    logger: opts.logger ?? silentLogger,
    restart: opts.restart ?? false,
    startTimeoutMs: 60_000,
  });
  await engine.start();
  return engine;
}

export function bearer(token: string): Metadata {
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  return md;
}

/** Promise wrapper for a grpc-js unary call written in callback style. */
export function unary<Res>(
  call: (cb: (err: import("@grpc/grpc-js").ServiceError | null, res?: Res) => void) => unknown,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    call((err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}

/** True when no process with this pid exists any more. */
export function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}
