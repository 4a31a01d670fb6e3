// The engines `npm start` runs itself (the embedded, single-machine mode):
// built binaries, configured from Config, supervised by EngineProcess.
import fs from "node:fs";
import path from "node:path";
import type { Config } from "../config/config";
import type { Logger } from "../log";
import { EngineProcess } from "./process";

export interface LocalEngines {
  inference: EngineProcess | undefined;
  transcription: EngineProcess | undefined;
}

function binary(config: Config, name: string): string {
  const p = path.join(config.buildDir, "bin", name);
  if (!fs.existsSync(p)) throw new Error(`${p} not found: run \`npm run setup\` (it builds the engines)`);
  return p;
}

function requireModel(variable: string, file: string) {
  if (!fs.existsSync(file))
    throw new Error(`${variable}=${file} does not exist (run \`npm run setup\` for the test models, or point ${variable} at a real model)`);
}

export function localEngines(config: Config, logger: Logger): LocalEngines {
  const env = { JOTA_ENGINE_TOKEN: config.engineToken };
  let inference: EngineProcess | undefined;
  if (config.localInference) {
    const li = config.localInference;
    const args = ["--listen", `127.0.0.1:${li.port}`, "--slots", String(li.slots), "--ctx-size", String(li.ctxSize)];
    if (li.model) {
      requireModel("JOTA_MODEL", li.model);
      args.push("--model", li.model);
    }
    if (li.embedModel) {
      requireModel("JOTA_EMBED_MODEL", li.embedModel);
      args.push("--embed-model", li.embedModel);
    }
    if (li.threads) args.push("--threads", String(li.threads));
    args.push("--state-dir", path.join(config.dataDir, "kv-state"));
    inference = new EngineProcess({
      name: "inference",
      binary: binary(config, "jota-inference"),
      args,
      env,
      healthService: "jota.v1.Inference",
      logger,
    });
  }
  let transcription: EngineProcess | undefined;
  if (config.localTranscription) {
    const lt = config.localTranscription;
    requireModel("JOTA_WHISPER_MODEL", lt.model);
    const args = ["--listen", `127.0.0.1:${lt.port}`, "--model", lt.model];
    if (lt.threads) args.push("--threads", String(lt.threads));
    transcription = new EngineProcess({
      name: "transcription",
      binary: binary(config, "jota-transcription"),
      args,
      env,
      healthService: "jota.v1.Transcription",
      logger,
    });
  }
  return { inference, transcription };
}
