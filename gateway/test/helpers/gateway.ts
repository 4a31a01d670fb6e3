// A whole gateway for tests: real engines on the generated models (started
// here, on free ports, with an engine token), an embedded PGlite database in
// a temporary folder, the Stack and the Gateway on 127.0.0.1 with free ports,
// and users with API keys. Nothing is mocked.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadConfig, silentLogger, type EngineProcess, type Logger } from "@jota/control-plane";
import { requireFile, startEngine, testModel } from "../../../control-plane/test/helpers/engines";
import { openStack, type Stack } from "../../src/stack";
import { startGateway, type Gateway } from "../../src/server";
import { ALL_SCOPES, DEFAULT_SCOPES, type Scope } from "../../src/auth/principal";

export interface TestUser {
  userId: string;
  username: string;
  /** The API key's secret, for `Authorization: Bearer …`. */
  key: string;
  keyId: string;
}

export interface TestGateway {
  gw: Gateway;
  stack: Stack;
  /** http://127.0.0.1:port */
  url: string;
  /** 127.0.0.1:port of jota.v1.Assistant */
  grpcAddress: string;
  inference: EngineProcess;
  transcription: EngineProcess | undefined;
  dataDir: string;
  admin: TestUser;
  /** A new USER with an API key (default scopes unless given). */
  user(name: string, scopes?: Scope[]): Promise<TestUser>;
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  /** Start a transcription engine too (tiny whisper model). */
  transcription?: boolean;
  /** Inference engine: slots and context (defaults 4 and 2048), chat model (default tiny-chat). */
  slots?: number;
  ctxSize?: number;
  model?: "tiny-chat.gguf" | "bench-chat.gguf";
  /** With the embedding model (default true). */
  embeddings?: boolean;
  threads?: number;
  /** Extra environment for loadConfig (e.g. JOTA_RATE_LIMIT, JOTA_SYNC_LIMIT_MS). */
  env?: Record<string, string>;
  logger?: Logger;
  /** An existing JOTA_DATA_DIR (e.g. prepared by the CLI); default a new temporary one. Removed by close() either way. */
  dataDir?: string;
}

const ENGINE_TOKEN = "test-engine-token-0123456789";

export async function startTestGateway(opts: TestGatewayOptions = {}): Promise<TestGateway> {
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "jota-gw-"));
  const threads = String(opts.threads ?? 1);
  const args = [
    "--model", requireFile(testModel(opts.model ?? "tiny-chat.gguf")),
    ...(opts.embeddings === false ? [] : ["--embed-model", requireFile(testModel("tiny-embed.gguf"))]),
    "--threads", threads,
    "--slots", String(opts.slots ?? 4),
    "--ctx-size", String(opts.ctxSize ?? 2048),
    "--state-dir", path.join(dataDir, "kv-state"),
  ];
  const [inference, transcription] = await Promise.all([
    startEngine({ kind: "inference", args, token: ENGINE_TOKEN }),
    opts.transcription
      ? startEngine({ kind: "transcription", args: ["--model", requireFile(testModel("tiny-whisper.bin")), "--threads", threads], token: ENGINE_TOKEN })
      : Promise.resolve(undefined),
  ]);
  const config = loadConfig({
    JOTA_DATA_DIR: dataDir,
    JOTA_HTTP_PORT: "0",
    JOTA_GRPC_PORT: "0",
    JOTA_HOST: "127.0.0.1",
    JOTA_ENGINE_TOKEN: ENGINE_TOKEN,
    JOTA_INFERENCE_URLS: inference.address!,
    JOTA_TRANSCRIPTION_URLS: transcription?.address ?? "",
    JOTA_WHISPER_MODEL: "",
    JOTA_SECRET: "test-secret-0123456789abcdef",
    // Tests make many calls with one key in quick bursts; the limit tests set their own.
    JOTA_RATE_LIMIT: "100000",
    JOTA_RATE_BURST: "100000",
    // Extraction after every turn is an engine call of its own, which tests that count the engine's
    // calls or time its slots would see; the memory tests turn it on.
    JOTA_MEMORY_EXTRACTION: "off",
    ...opts.env,
  });
  const log = opts.logger ?? silentLogger;
  const stack = await openStack(config, log, { pool: { infoIntervalMs: 200, backoffInitialMs: 100, backoffMaxMs: 1000 } });
  await stack.pool.ready("inference", 30_000);
  if (transcription) await stack.pool.ready("transcription", 30_000);
  const gw = await startGateway(stack, { host: "127.0.0.1", httpPort: 0, grpcPort: 0 });

  const makeUser = async (username: string, role: "ADMIN" | "USER", scopes: readonly Scope[]): Promise<TestUser> => {
    const u = await stack.db.repos.users.create({ username, role });
    const { key, secret } = await stack.db.repos.apiKeys.create(u.id, { name: `${username}-test`, scopes: [...scopes] });
    return { userId: u.id, username, key: secret, keyId: key.id };
  };
  const admin = await makeUser("root", "ADMIN", ALL_SCOPES);
  let closed: Promise<void> | undefined;
  return {
    gw,
    stack,
    url: gw.url,
    grpcAddress: gw.grpcAddress,
    inference,
    transcription,
    dataDir,
    admin,
    user: (name, scopes) => makeUser(name, "USER", scopes ?? DEFAULT_SCOPES),
    close: () =>
      (closed ??= (async () => {
        await gw.close();
        await stack.close();
        await Promise.all([inference.stop(), transcription?.stop()]);
        fs.rmSync(dataDir, { recursive: true, force: true });
      })()),
  };
}

/** fetch with the key as bearer and JSON in/out. */
export async function api(
  t: { url: string },
  key: string | undefined,
  method: string,
  p: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; json: any; text: string }> {
  const res = await fetch(`${t.url}${p}`, {
    method,
    headers: {
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(body !== undefined && typeof body !== "string" ? { "content-type": "application/json" } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

/** Polls `probe` every 100 ms until `done` says so; fails after `ms` with the last value seen. */
export async function until<T>(what: string, ms: number, probe: () => Promise<T>, done: (v: T) => boolean): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (done(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(v).slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
