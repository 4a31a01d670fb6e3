// npm run bench:gateway — what the gateway costs a streaming client, in one
// run, on the bench model (SmolLM2-135M shapes, random weights):
//   1. one turn's decode rate three ways, alternating (direct, WS, SSE, …):
//      - direct: the same GenerateRequest sent straight to the engine (the
//        messages a turn sends: Jota's system prompt, then the user's),
//      - ws: a `message` frame on /api/v1/ws/chat/{user_id},
//      - sse: POST /v1/chat/completions with stream: true (read with
//        node:http, as cheap per chunk as the ws and grpc-js clients);
//      each run is the first turn of a new conversation (no KV cache either
//      way), greedy, max_tokens GEN; a user message that makes the model
//      generate all GEN tokens is chosen once, before measuring;
//      tokens/s = tokens after the first arrival over first-to-last arrival;
//      ws_ratio / sse_ratio = the median of the per-run ratios (each run's
//      three turns back to back, their order rotated), which drift between
//      runs on a shared machine does not move; the ratios of the medians are
//      reported beside them (*_of_medians);
//      p99_gap_ms = p99 of the WS client's inter-token gaps minus p99 of the
//      direct client's (what the gateway adds to the worst gaps);
//   2. 500 WebSocket clients: all connect (idle), the gateway's RSS is read
//      from /proc before and after (rss_per_idle_conn_kb), then each runs one
//      short turn at the same time; every turn must end COMPLETED.
// The gateway runs as its own process (`gateway/src/main.ts`, as `npm start`
// runs it) over an engine this script starts, so its memory is its own.
// The last line of output is one JSON object with the figures.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { credentials } from "@grpc/grpc-js";
import WebSocket from "ws";
import { InferenceClient, type ChatMessage, type GenerateEvent, GenerateRequest } from "../../control-plane/src/gen/jota/v1/inference";
import { DEFAULT_SYSTEM_PROMPT, systemMessage } from "../../control-plane/src/sessions/prompt";
import { bearer, requireFile, startEngine, testModel } from "../../control-plane/test/helpers/engines";
import { repoRoot } from "../../control-plane/src/config/paths";
import { median, pct, round } from "./stats";

const THREADS = 2;
const SLOTS = 4;
const CTX = 2048;
const GEN = 128;
const RUNS = Number(process.env.BENCH_RUNS ?? 9);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 500);
const SHORT = 8; // tokens of each of the many clients' turns
const TOKEN = "bench-engine-token-0123456789";
const model = requireFile(testModel("bench-chat.gguf"));
const log = (...a: unknown[]) => console.log(...a);

const CANDIDATES = [
  "Cuéntame una historia larga sobre un faro en la costa de Galicia, con todos los detalles que se te ocurran.",
  "Write a long, detailed story about a lighthouse keeper and the storm that changed his life.",
  "Explain, step by step and at length, how a heat pump warms a house in winter.",
  "List one hundred things to do on a rainy Sunday afternoon, numbered.",
  "Hola",
  "Tell me everything you know.",
];

interface Run {
  tps: number;
  tokens: number;
  gaps: number[];
  text: string;
}

/** Arrivals of (time, tokens); the rate counts the tokens after the first arrival. */
function rate(arrivals: { at: number; tokens: number }[], text: string): Run {
  if (arrivals.length < 2) throw new Error("fewer than two arrivals");
  const tokens = arrivals.reduce((s, a) => s + a.tokens, 0);
  const first = arrivals[0]!;
  const last = arrivals[arrivals.length - 1]!;
  const gaps = arrivals.slice(1).map((a, i) => a.at - arrivals[i]!.at);
  return { tps: ((tokens - first.tokens) * 1000) / (last.at - first.at), tokens, gaps, text };
}

async function direct(client: InferenceClient, content: string, session: string): Promise<Run> {
  const messages: ChatMessage[] = [systemMessage(DEFAULT_SYSTEM_PROMPT, [], undefined), { role: "user", content }];
  const req = GenerateRequest.fromPartial({ input: { $case: "messages", value: { items: messages } }, sessionId: session, sampling: { temperature: 0 }, maxTokens: GEN });
  const arrivals: { at: number; tokens: number }[] = [];
  let text = "";
  for await (const ev of client.generate(req, bearer(TOKEN)) as AsyncIterable<GenerateEvent>) {
    if (ev.event?.$case === "delta") {
      arrivals.push({ at: performance.now(), tokens: ev.event.value.tokenIds.length });
      text += ev.event.value.text;
    }
  }
  return rate(arrivals, text);
}

/** One turn on an open socket; token frames carry `index` (first token) and the end frame the total. */
function wsTurn(ws: WebSocket, content: string, maxTokens: number): Promise<{ arrivals: { at: number; index: number }[]; completion: number; status: string; text: string }> {
  return new Promise((resolve, reject) => {
    const id = `m${Math.random().toString(36).slice(2)}`;
    const arrivals: { at: number; index: number }[] = [];
    let text = "";
    const onMessage = (data: WebSocket.RawData) => {
      const f = JSON.parse(data.toString());
      if (f.type === "token") {
        arrivals.push({ at: performance.now(), index: f.index });
        text += f.text;
      } else if (f.type === "end" && f.id === id) {
        ws.off("message", onMessage);
        resolve({ arrivals, completion: f.usage.completion_tokens, status: f.status, text });
      } else if (f.type === "error" && f.id === id) {
        ws.off("message", onMessage);
        reject(new Error(`${f.code}: ${f.message}`));
      }
    };
    ws.on("message", onMessage);
    ws.send(JSON.stringify({ type: "message", id, conversation_id: null, content, options: { max_tokens: maxTokens, temperature: 0 } }));
  });
}

const indexedRate = (r: { arrivals: { at: number; index: number }[]; completion: number; text: string }): Run =>
  rate(
    r.arrivals.map((a, i) => ({ at: a.at, tokens: (r.arrivals[i + 1]?.index ?? r.completion) - a.index })),
    r.text,
  );

async function sse(url: string, key: string, content: string): Promise<Run> {
  // node:http, not fetch: the client shares the machine's cores with the engine, and fetch's web
  // streams cost it several times the CPU per chunk of Node's own streams (what ws and grpc-js use).
  const body = JSON.stringify({ model: "jota", messages: [{ role: "user", content }], max_tokens: GEN, temperature: 0, stream: true, stream_options: { include_usage: true } });
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request(`${url}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, resolve);
    req.on("error", reject);
    req.end(body);
  });
  if (res.statusCode !== 200) {
    let text = "";
    for await (const c of res) text += c;
    throw new Error(`SSE ${res.statusCode}: ${text}`);
  }
  res.setEncoding("utf8");
  const arrivals: { at: number; tokens: number }[] = [];
  let text = "";
  let completion = 0;
  let buf = "";
  for await (const chunk of res as AsyncIterable<string>) {
    const at = performance.now();
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const j = JSON.parse(event.slice(6));
      const piece = j.choices?.[0]?.delta?.content;
      if (piece) {
        arrivals.push({ at, tokens: 1 });
        text += piece;
      }
      if (j.usage) completion = j.usage.completion_tokens;
    }
  }
  // SSE chunks carry text, not token counts: spread the usage's total over them (one delta is one token but for held-back UTF-8).
  if (completion && arrivals.length) arrivals[arrivals.length - 1]!.tokens += completion - arrivals.reduce((s, a) => s + a.tokens, 0);
  return rate(arrivals, text);
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]);
}

async function startGatewayProcess(dataDir: string, engineAddress: string): Promise<{ proc: ChildProcess; url: string }> {
  // With npm start's V8 flag (package.json; README, "Performance").
  const proc = spawn(process.execPath, ["--max-semi-space-size=64", "--import", "tsx", "gateway/src/main.ts"], {
    cwd: repoRoot,
    env: {
      ...process.env,
      JOTA_DATA_DIR: dataDir,
      JOTA_HTTP_PORT: "0",
      JOTA_GRPC_PORT: "0",
      JOTA_INFERENCE_URLS: engineAddress,
      JOTA_WHISPER_MODEL: "",
      JOTA_ENGINE_TOKEN: TOKEN,
      JOTA_RATE_LIMIT: "1000000",
      JOTA_RATE_BURST: "100000",
      JOTA_MAX_STREAMS: String(CLIENTS * 2),
      // What is measured is the gateway's streaming path: no background memory extraction after each
      // measured turn (it would generate on the same engine while the next runs are timed).
      JOTA_MEMORY_EXTRACTION: "off",
      JOTA_LOG_LEVEL: "info", // the "listening" line is info
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    // A first start creates the embedded database (initdb in WASM): seconds on a quiet machine, far longer on a loaded one.
    const timer = setTimeout(() => reject(new Error("the gateway did not start in 180 s")), 180_000);
    createInterface({ input: proc.stderr! }).on("line", (l) => {
      try {
        const j = JSON.parse(l);
        if (j.msg === "listening" && j.http) {
          clearTimeout(timer);
          resolve(j.http);
        } else if (j.level === "error") log(`gateway: ${l}`);
      } catch {
        /* not JSON */
      }
    });
    proc.once("exit", (code) => reject(new Error(`the gateway exited with ${code}`)));
  }).catch((err) => {
    proc.kill("SIGKILL"); // never leave a half-started gateway behind
    throw err;
  });
  return { proc, url };
}

function connect(url: string, userId: string, key: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/api/v1/ws/chat/${userId}`, { headers: { authorization: `Bearer ${key}` } });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

async function main() {
  log(`bench-chat.gguf, ${THREADS} threads, ${SLOTS} slots, ${GEN} tokens per measured turn, ${RUNS} runs each; then ${CLIENTS} WS clients x ${SHORT} tokens`);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "jota-bench-gw-"));
  // The queue must hold every client's turn: the engine's default (64) would refuse most of 500.
  const engine = await startEngine({
    kind: "inference",
    token: TOKEN,
    args: ["--model", model, "--threads", String(THREADS), "--slots", String(SLOTS), "--ctx-size", String(CTX), "--queue-max", String(CLIENTS * 2)],
  });
  const client = new InferenceClient(engine.address!, credentials.createInsecure());
  let gw: ChildProcess | undefined;
  const sockets: WebSocket[] = [];
  try {
    const g = await startGatewayProcess(scratch, engine.address!);
    gw = g.proc;
    const url = g.url;
    const adminKey = fs.readFileSync(path.join(scratch, "admin-key"), "utf8").trim();
    const post = async (p: string, body: unknown) => {
      const r = await fetch(`${url}/api/v1${p}`, { method: "POST", headers: { authorization: `Bearer ${adminKey}`, "content-type": "application/json" }, body: JSON.stringify(body) });
      if (!r.ok) throw new Error(`POST ${p}: ${r.status} ${await r.text()}`);
      return (await r.json()) as any;
    };
    const user = await post("/admin/users", { username: "bench" });
    const userId: string = user.id;
    const keyRes = await post(`/admin/users/${userId}/keys`, { name: "bench", scopes: ["chat"] });
    const key: string = keyRes.secret ?? keyRes.key?.secret;
    if (!key) throw new Error(`no secret in ${JSON.stringify(keyRes)}`);

    // --- 1. one turn, three ways ---------------------------------------------
    let session = 0;
    let content: string | undefined;
    for (const c of CANDIDATES) {
      const r = await direct(client, c, `probe-${++session}`);
      log(`probe ${JSON.stringify(c.slice(0, 40))}: ${r.tokens} tokens`);
      if (r.tokens === GEN) {
        content = c;
        break;
      }
    }
    if (!content) throw new Error(`no candidate makes the model generate ${GEN} tokens`);
    const ws = await connect(url, userId, key);
    const viaWs = async () => indexedRate(await wsTurn(ws, content!, GEN));
    const viaDirect = () => direct(client, content!, `direct-${++session}`);
    const viaSse = () => sse(url, key, content!);
    await viaDirect();
    await viaWs();
    await viaSse(); // warm-up
    const d: Run[] = [];
    const w: Run[] = [];
    const s: Run[] = [];
    for (let i = 0; i < RUNS; i++) {
      const order = [
        async () => d.push(await viaDirect()),
        async () => w.push(await viaWs()),
        async () => s.push(await viaSse()),
      ];
      for (let k = 0; k < 3; k++) await order[(i + k) % 3]!();
      log(`run ${i + 1}: direct ${round(d[i]!.tps)} t/s (${d[i]!.tokens}) | ws ${round(w[i]!.tps)} t/s (${w[i]!.tokens}) | sse ${round(s[i]!.tps)} t/s (${s[i]!.tokens})`);
    }
    ws.close();
    const sameText = w.every((r) => r.text === d[0]!.text) && s.every((r) => r.text === d[0]!.text);
    if (!sameText) log("WARNING: the replies differ between paths: the comparison is not like for like");
    const engineTps = median(d.map((r) => r.tps));
    const wsTps = median(w.map((r) => r.tps));
    const sseTps = median(s.map((r) => r.tps));
    const p99Direct = pct(d.flatMap((r) => r.gaps), 99);
    const p99Ws = pct(w.flatMap((r) => r.gaps), 99);

    // --- 2. many clients -----------------------------------------------------
    await new Promise((r) => setTimeout(r, 1000));
    const rssBefore = rssKb(gw.pid!);
    for (let i = 0; i < CLIENTS; i += 50)
      sockets.push(...(await Promise.all(Array.from({ length: Math.min(50, CLIENTS - i) }, () => connect(url, userId, key)))));
    await new Promise((r) => setTimeout(r, 2000));
    const rssIdle = rssKb(gw.pid!);
    log(`${sockets.length} idle connections: gateway RSS ${rssBefore} kB -> ${rssIdle} kB`);
    const t0 = performance.now();
    const results = await Promise.allSettled(sockets.map((sock, i) => wsTurn(sock, `Cliente ${i}: ${content!.slice(0, 60)}`, SHORT)));
    const wall = performance.now() - t0;
    const completed = results.filter((r) => r.status === "fulfilled" && r.value.status === "COMPLETED").length;
    const failures = results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason));
    if (failures.length) log(`failures (${failures.length}), first: ${failures.slice(0, 3).join(" | ")}`);
    const manyTokens = results.reduce((sum, r) => sum + (r.status === "fulfilled" ? r.value.completion : 0), 0);
    log(`${completed}/${CLIENTS} turns completed in ${round(wall / 1000, 2)} s (${round((manyTokens * 1000) / wall)} t/s aggregate)`);

    console.log(
      JSON.stringify({
        bench: "gateway",
        model: "models/test/bench-chat.gguf (SmolLM2-135M shapes, random weights)",
        threads: THREADS,
        runs: RUNS,
        same_text: sameText,
        engine_tps: round(engineTps),
        ws_tps: round(wsTps),
        sse_tps: round(sseTps),
        ws_ratio: round(median(w.map((r, i) => r.tps / d[i]!.tps)), 3),
        sse_ratio: round(median(s.map((r, i) => r.tps / d[i]!.tps)), 3),
        ws_ratio_of_medians: round(wsTps / engineTps, 3),
        sse_ratio_of_medians: round(sseTps / engineTps, 3),
        p99_gap_direct_ms: round(p99Direct, 2),
        p99_gap_ws_ms: round(p99Ws, 2),
        p99_gap_ms: round(p99Ws - p99Direct, 2),
        clients: CLIENTS,
        completed,
        many_wall_s: round(wall / 1000, 2),
        rss_before_kb: rssBefore,
        rss_idle_kb: rssIdle,
        rss_per_idle_conn_kb: round((rssIdle - rssBefore) / CLIENTS, 1),
      }),
    );
  } finally {
    for (const s of sockets) s.terminate();
    client.close();
    if (gw && gw.exitCode === null) {
      const exited = new Promise((r) => gw!.once("exit", r));
      gw.kill("SIGTERM");
      await exited;
    }
    await engine.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
