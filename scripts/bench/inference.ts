// npm run bench:inference — jota-inference against llama.cpp's own tools, in
// one run, on the bench model (SmolLM2-135M shapes, random weights), 2 threads:
//   1. llama-bench: token generation (-n 128) and prefill (-p 512) rates;
//   2. the engine's single-stream decode rate, measured by a gRPC client;
//   3. 4 concurrent streams: aggregate tokens/s, engine vs llama-server -np 4
//      streaming the same requests;
//   4. time to first token of turns 1 and 8 of one conversation (each turn
//      adds ~100 tokens): engine with a session id vs llama-server with
//      cache_prompt.
// Both servers get identical token ids as prompts. The last line of output is
// one JSON object with the figures.
import { spawnSync } from "node:child_process";
import { credentials } from "@grpc/grpc-js";
import { InferenceClient, type GenerateEvent, type GenerateRequest, type TokenizeResponse } from "../../control-plane/src/gen/jota/v1/inference";
import { buildBin, requireFile, startEngine, testModel, unary } from "../../control-plane/test/helpers/engines";
import { LlamaServer } from "../../engines/tests/helpers/reference";
import { request } from "../../engines/tests/helpers/inference";

const THREADS = 2;
const GEN = 128;
const CTX = 2048;
const RUNS = 3;
const model = requireFile(testModel("bench-chat.gguf"));
const log = (...a: unknown[]) => console.log(...a);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

interface Timed {
  ttftMs: number;
  tokens: number[];
  decodeTps: number; // (n-1) tokens over first token -> last token
  endMs: number;
}

// --- the engine over gRPC -------------------------------------------------
async function engineGenerate(client: InferenceClient, req: GenerateRequest): Promise<Timed> {
  const t0 = performance.now();
  let first = 0;
  let last = 0;
  const tokens: number[] = [];
  for await (const ev of client.generate(req) as AsyncIterable<GenerateEvent>) {
    if (ev.event?.$case !== "delta") continue;
    const now = performance.now();
    if (!first) first = now;
    last = now;
    tokens.push(...ev.event.value.tokenIds);
  }
  return { ttftMs: first - t0, tokens, decodeTps: tokens.length > 1 ? ((tokens.length - 1) * 1000) / (last - first) : 0, endMs: last - t0 };
}

// --- llama-server's streaming /completion ---------------------------------
async function serverGenerate(srv: LlamaServer, prompt: number[], nPredict: number, cache: boolean): Promise<Timed> {
  const t0 = performance.now();
  const res = await fetch(`${srv.url}/completion`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt, n_predict: nPredict, temperature: 0, stream: true, cache_prompt: cache, return_tokens: true }),
  });
  let first = 0;
  let last = 0;
  const tokens: number[] = [];
  let buf = "";
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line.startsWith("data: ")) continue;
      const ev = JSON.parse(line.slice(6)) as { tokens?: number[]; stop?: boolean };
      if (ev.tokens?.length) {
        const now = performance.now();
        if (!first) first = now;
        last = now;
        tokens.push(...ev.tokens);
      }
    }
  }
  return { ttftMs: first - t0, tokens, decodeTps: tokens.length > 1 ? ((tokens.length - 1) * 1000) / (last - first) : 0, endMs: last - t0 };
}

function llamaBench(): { tg: number; pp: number } {
  const r = spawnSync(requireFile(buildBin("llama-bench")), ["-m", model, "-t", String(THREADS), "-n", String(GEN), "-p", "512", "-r", String(RUNS), "-o", "json"], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`llama-bench failed: ${r.stderr}`);
  const rows = JSON.parse(r.stdout) as { n_prompt: number; n_gen: number; avg_ts: number }[];
  return { tg: rows.find((x) => x.n_gen > 0)!.avg_ts, pp: rows.find((x) => x.n_prompt > 0)!.avg_ts };
}

const TEXT =
  "Jota is a self-hosted assistant that remembers what you tell it, runs its own models, and answers from your documents. " +
  "It speaks Spanish and English, controls the lights at home, and never sends anything to the cloud. ";

async function main() {
  log(`bench-chat.gguf, ${THREADS} threads, ${GEN} generated tokens, median of ${RUNS}`);
  // 1. llama-bench first, alone on the machine.
  const bench = llamaBench();
  log(`llama-bench: tg${GEN} ${round(bench.tg)} t/s, pp512 ${round(bench.pp)} t/s`);

  const engine = await startEngine({
    kind: "inference",
    args: ["--model", model, "--threads", String(THREADS), "--slots", "4", "--ctx-size", String(CTX)],
  });
  const client = new InferenceClient(engine.address!, credentials.createInsecure());
  const tokenize = async (text: string, addSpecial: boolean) =>
    (await unary<TokenizeResponse>((cb) => client.tokenize({ text, addSpecial, parseSpecial: true, embeddingModel: false }, cb))).ids;
  const prompts = await Promise.all([0, 1, 2, 3].map((i) => tokenize(`Stream ${i}. ${TEXT}`, true)));
  const req = (ids: number[], extra: Partial<GenerateRequest> = {}) =>
    request({ input: { $case: "promptTokens", value: { ids } }, maxTokens: GEN, ...extra });

  // 2. Single stream.
  const singles: number[] = [];
  for (let r = 0; r < RUNS; r++) singles.push((await engineGenerate(client, req(prompts[0]!))).decodeTps);
  const engineTps = median(singles);
  log(`engine single stream: ${round(engineTps)} t/s (runs ${singles.map((x) => round(x))})`);

  // 3. Four concurrent streams: all completion tokens over the wall time of the batch.
  const agg = async (run: () => Promise<Timed[]>) => {
    const t0 = performance.now();
    const rs = await run();
    const wall = performance.now() - t0;
    return { tps: (rs.reduce((n, r) => n + r.tokens.length, 0) * 1000) / wall, tokens: rs.map((r) => r.tokens.length) };
  };
  const engineAgg: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const a = await agg(() => Promise.all(prompts.map((p) => engineGenerate(client, req(p)))));
    engineAgg.push(a.tps);
    log(`engine 4 streams: ${round(a.tps)} t/s (tokens ${a.tokens})`);
  }

  // 4. Turns of one conversation, with a session id: each adds ~100 user
  // tokens to the history and the previous reply.
  const opening = await tokenize(TEXT, true);
  const turns = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((k) => tokenize(` Turn ${k}: ${TEXT.slice(0, 400)}`, false)));
  const conversation = async (gen: (ids: number[]) => Promise<Timed>) => {
    let ids = opening;
    const ttft: number[] = [];
    for (const turn of turns) {
      ids = [...ids, ...turn];
      const r = await gen(ids);
      ttft.push(r.ttftMs);
      ids = [...ids, ...r.tokens];
    }
    return { ttft, promptTokens: ids.length };
  };
  const engineTurns = await conversation((ids) => engineGenerate(client, req(ids, { sessionId: "bench", maxTokens: 32 })));
  log(`engine turns: ttft ${engineTurns.ttft.map((x) => round(x))} ms (final prompt ${engineTurns.promptTokens} tokens)`);
  client.close();
  await engine.stop();

  // llama-server with 4 slots, the same requests.
  const srv = await LlamaServer.start(["-m", model, "-t", String(THREADS), "-np", "4", "-c", String(CTX * 4), "--no-warmup"]);
  try {
    const serverAgg: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const a = await agg(() => Promise.all(prompts.map((p) => serverGenerate(srv, p, GEN, false))));
      serverAgg.push(a.tps);
      log(`llama-server 4 streams: ${round(a.tps)} t/s (tokens ${a.tokens})`);
    }
    const serverTurns = await conversation((ids) => serverGenerate(srv, ids, 32, true));
    log(`llama-server turns: ttft ${serverTurns.ttft.map((x) => round(x))} ms`);

    const agg4 = median(engineAgg);
    const serverAgg4 = median(serverAgg);
    const result = {
      bench: "inference",
      model: "models/test/bench-chat.gguf (SmolLM2-135M shapes, random weights)",
      threads: THREADS,
      engine_tps: round(engineTps),
      llama_bench_tps: round(bench.tg),
      llama_bench_pp512_tps: round(bench.pp),
      single_ratio: round(engineTps / bench.tg, 3),
      agg4_tps: round(agg4),
      llama_server_agg4_tps: round(serverAgg4),
      agg4_ratio: round(agg4 / serverAgg4, 3),
      ttft_turn1_ms: round(engineTurns.ttft[0]!),
      ttft_turn8_ms: round(engineTurns.ttft[7]!),
      llama_server_ttft_turn1_ms: round(serverTurns.ttft[0]!),
      llama_server_ttft_turn8_ms: round(serverTurns.ttft[7]!),
      ttft_ratio: round(engineTurns.ttft[7]! / serverTurns.ttft[7]!, 3),
      turn8_prompt_tokens: engineTurns.promptTokens,
    };
    console.log(JSON.stringify(result));
  } finally {
    await srv.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
