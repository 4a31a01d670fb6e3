// `npm start`: the whole stack on one machine. Opens the database, starts the
// engines as child processes, then the gateway (HTTP + WebSocket, edge gRPC),
// prints where it listens, and on Ctrl-C (or SIGTERM) stops everything it
// started, children included.
import { ConfigError, createLogger, loadConfig } from "@jota/control-plane";
import { startGateway, type Gateway } from "./server";
import { openStack, type Stack } from "./stack";
import { bootstrapAdmin } from "./auth/bootstrap";

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
  const log = createLogger(config.logLevel, { component: "jota" });
  if (config.usesTestModels)
    log.warn(
      "running on GENERATED TEST MODELS with random weights: replies are gibberish. " +
        "Point JOTA_MODEL / JOTA_EMBED_MODEL / JOTA_WHISPER_MODEL at real models " +
        "(`npm run models:download` fetches recommended ones where the internet is reachable).",
    );

  let stack: Stack | undefined;
  let gateway: Gateway | undefined;
  let stopping: Promise<void> | undefined;
  const shutdown = (why: string) =>
    (stopping ??= (async () => {
      log.info("stopping", { reason: why });
      await gateway?.close();
      await stack?.close();
      log.info("stopped");
    })());
  const onSignal = (sig: NodeJS.Signals) => {
    void shutdown(sig).then(() => process.exit(0));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    stack = await openStack(config, log);
    if (stopping) return 0;
    await bootstrapAdmin(stack, log);
    gateway = await startGateway(stack, { host: config.host, httpPort: config.httpPort, grpcPort: config.gateway.grpcPort });
  } catch (err) {
    log.error("start-up failed", { error: (err as Error).message });
    await shutdown("start-up failure");
    return 1;
  }
  log.info("listening", {
    http: gateway.url,
    health: `${gateway.url}/health/ready`,
    grpc: gateway.grpcAddress,
    database: stack.db.backend,
    engines: stack.pool.status().map((s) => `${s.kind}@${s.address}`),
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
