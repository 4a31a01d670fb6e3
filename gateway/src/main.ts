// `npm start`: the whole stack on one machine. Starts the engines as child
// processes, then the gateway, prints where it listens, and on Ctrl-C (or
// SIGTERM) stops everything it started, children included.
import http from "node:http";
import type { AddressInfo } from "node:net";
import fs from "node:fs";
import {
  ConfigError,
  createLogger,
  loadConfig,
  localEngines,
  type EngineProcess,
} from "@jota/control-plane";
import { createApp } from "./app";
import type { EngineTarget } from "./http/health";

async function main(): Promise<number> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`jota: configuration error: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger(config.logLevel, { component: "gateway" });
  fs.mkdirSync(config.dataDir, { recursive: true });

  if (config.usesTestModels)
    log.warn(
      "running on GENERATED TEST MODELS with random weights: replies are gibberish. " +
        "Point JOTA_MODEL / JOTA_EMBED_MODEL / JOTA_WHISPER_MODEL at real models " +
        "(`npm run models:download` fetches recommended ones where the internet is reachable).",
    );

  const engines = localEngines(config, log);
  const running: EngineProcess[] = [];
  let stopping = false;
  const server = http.createServer();

  const shutdown = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info("stopping", { reason: why });
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await Promise.all(running.map((e) => e.stop()));
    log.info("stopped");
  };
  const onSignal = (sig: NodeJS.Signals) => {
    void shutdown(sig).then(() => process.exit(0));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    const starts = [engines.inference, engines.transcription]
      .filter((e): e is EngineProcess => !!e)
      .map(async (e) => {
        running.push(e);
        await e.start();
      });
    await Promise.all(starts);
  } catch (err) {
    log.error("an engine failed to start", { error: (err as Error).message });
    await shutdown("engine start failure");
    return 1;
  }
  if (stopping) return 0;

  const targets = (): EngineTarget[] => [
    ...(engines.inference?.address
      ? [{ kind: "inference" as const, address: engines.inference.address, service: "jota.v1.Inference" }]
      : config.inferenceUrls.map((address) => ({ kind: "inference" as const, address, service: "jota.v1.Inference" }))),
    ...(engines.transcription?.address
      ? [{ kind: "transcription" as const, address: engines.transcription.address, service: "jota.v1.Transcription" }]
      : config.transcriptionUrls.map((address) => ({
          kind: "transcription" as const,
          address,
          service: "jota.v1.Transcription",
        }))),
  ];
  server.on("request", createApp({ engines: targets }));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.httpPort, config.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  log.info("listening", {
    http: `http://${config.host}:${port}`,
    health: `http://${config.host}:${port}/health`,
    engines: targets().map((t) => `${t.kind}@${t.address}`),
  });
  return -1; // keep running until a signal
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err) => {
    process.stderr.write(`jota: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
