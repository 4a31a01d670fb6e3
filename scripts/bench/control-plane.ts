// npm run bench:control-plane — what the control plane costs a chat turn, in
// one run, on the bench model (SmolLM2-135M shapes, random weights), one
// jota-inference with 2 threads, 2 slots, ctx 2048:
//   - direct: one GenerateRequest sent straight to the engine over gRPC (the
//     ts-proto client, its own channel);
//   - control plane: turn() (control-plane/src/sessions/turn.ts, with the
//     conversation locks, as runner.ts calls it) over an EnginePool on the
//     same engine, with all of its database work (request and user message,
//     route, affinity, token counts, STREAMING, outcome and reply) on
//     embedded PGlite in a fresh data directory.
// The same request both ways: every run is the first turn of a new
// conversation (so neither side has a KV cache to reuse), and the direct
// request carries exactly the messages the turn sends (its system message,
// built by prompt.ts from DEFAULT_SYSTEM_PROMPT, then the user's message), a
// fresh session id, the same max_tokens and greedy sampling. The engine has no
// ignore-EOS switch, so a user message is chosen (once, before measuring) that
// makes the model generate all of max_tokens; each run's prompt and completion
// token counts and texts are compared across the two sides and reported.
// Runs alternate direct / control plane (ABAB..., after one warm-up each) so
// that drift on a shared machine hits both alike.
//   tokens/s: decode rate, the tokens after the first delta over the time from
//     the first delta to the last one (as bench:inference);
//   TTFT: from the call (client.generate / turn()) to the first delta, so the
//     control plane's includes every write and engine call it makes first;
//   tps_ratio: median control-plane rate over median direct rate (and
//     tps_ratio_paired_p50, the median of the per-pair ratios);
//   added_ttft_ms_p50: the median of the per-pair differences (cp - direct);
//   added_ttft_ms_mean: the mean of the same differences, which outliers move
//     but which, unlike a median, counts every pair's cost;
//   added_ttft_outside_engine_ms_p50: the same, each TTFT less the engine's own
//     queue + prefill time (its done timings);
//   tail: the control plane's last delta to its `done` event (the outcome and
//     reply written), not part of either rate.
// BENCH_RUNS sets the number of pairs (default 30: the prefill alone varies by
// tens of ms run to run, and with 15 the median of the differences moved from
// -7 to +30 ms between runs), BENCH_THREADS the engine's threads (default 2).
// The last line of output is one JSON object with the figures.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { credentials } from "@grpc/grpc-js";
import { openDatabase } from "../../control-plane/src/db/database";
import { EnginePool } from "../../control-plane/src/engines/pool";
import { InferenceClient, type ChatMessage, type GenerateEvent, GenerateRequest } from "../../control-plane/src/gen/jota/v1/inference";
import { silentLogger } from "../../control-plane/src/log";
import { DEFAULT_SYSTEM_PROMPT, systemMessage } from "../../control-plane/src/sessions/prompt";
import { ConversationLocks } from "../../control-plane/src/sessions/locks";
import { turn, type TurnOptions } from "../../control-plane/src/sessions/turn";
import { requireFile, startEngine, testModel } from "../../control-plane/test/helpers/engines";
import { median, round } from "./stats";

// The engine's threads. The default, 2, takes both of this machine's cores,
// so any CPU the control plane spends while the engine prefills (its
// database write, PGlite running in this process) delays the first token;
// BENCH_THREADS=1 leaves a core free and shows the control plane's own cost.
const THREADS = Number(process.env.BENCH_THREADS ?? 2);
const SLOTS = 2;
const CTX = 2048;
const GEN = 128;
const RUNS = Number(process.env.BENCH_RUNS ?? 30);
const model = requireFile(testModel("bench-chat.gguf"));
const log = (...a: unknown[]) => console.log(...a);

const SAMPLING = { temperature: 0 };
// Candidates for the user's message; the first that makes the model generate
// all GEN tokens (no early end-of-generation) is used for every run.
const CANDIDATES = [
  "Cuéntame una historia larga sobre un faro en la costa de Galicia, con todos los detalles que se te ocurran.",
  "Write a long, detailed story about a lighthouse keeper and the storm that changed his life.",
  "Explain, step by step and at length, how a heat pump warms a house in winter.",
  "List one hundred things to do on a rainy Sunday afternoon, numbered.",
  "Hola",
  "Tell me everything you know.",
];

interface Run {
  ttftMs: number;
  decodeTps: number;
  /** Last delta to the end of the call / the turn's `done` event. */
  tailMs: number;
  promptTokens: number;
  completionTokens: number;
  text: string;
  /** The engine's own queue + prefill time (its `done` timings): the part of the TTFT spent inside the engine. */
  engineMs: number;
}

/** Decode rate from the deltas' arrival times and token counts. */
function timed(t0: number, arrivals: { at: number; tokens: number }[], end: number, promptTokens: number, completionTokens: number, text: string, engineMs: number): Run {
  if (arrivals.length === 0) throw new Error("no delta was streamed");
  const first = arrivals[0]!;
  const last = arrivals[arrivals.length - 1]!;
  const after = completionTokens - first.tokens;
  return {
    ttftMs: first.at - t0,
    decodeTps: after > 0 && last.at > first.at ? (after * 1000) / (last.at - first.at) : 0,
    tailMs: end - last.at,
    promptTokens,
    completionTokens,
    text,
    engineMs,
  };
}

async function direct(client: InferenceClient, messages: ChatMessage[], sessionId: string): Promise<Run> {
  const req = GenerateRequest.fromPartial({
    input: { $case: "messages", value: { items: messages } },
    sessionId,
    sampling: SAMPLING,
    maxTokens: GEN,
  });
  const t0 = performance.now();
  const arrivals: { at: number; tokens: number }[] = [];
  let text = "";
  let promptTokens = 0;
  let completionTokens = 0;
  let engineMs = 0;
  for await (const ev of client.generate(req) as AsyncIterable<GenerateEvent>) {
    const e = ev.event;
    if (e?.$case === "delta") {
      arrivals.push({ at: performance.now(), tokens: e.value.tokenIds.length });
      text += e.value.text;
    } else if (e?.$case === "started") promptTokens = e.value.promptTokens;
    else if (e?.$case === "done") {
      completionTokens = e.value.usage?.completionTokens ?? 0;
      engineMs = (e.value.timings?.queueMs ?? 0) + (e.value.timings?.prefillMs ?? 0);
    }
  }
  const end = performance.now();
  return timed(t0, arrivals, end, promptTokens, completionTokens, text, engineMs);
}

async function main() {
  log(`bench-chat.gguf, ${THREADS} threads, ${SLOTS} slots, ctx ${CTX}, ${GEN} generated tokens, greedy; ${RUNS} runs each, alternating`);
  const engine = await startEngine({
    kind: "inference",
    args: ["--model", model, "--threads", String(THREADS), "--slots", String(SLOTS), "--ctx-size", String(CTX)],
  });
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "jota-bench-cp-"));
  const db = await openDatabase({ dataDir: path.join(scratch, "db"), logger: silentLogger });
  // The pool with its production defaults (Info every second, 2 s call timeout).
  const pool = new EnginePool({ inference: [engine.address!], transcription: [], token: "", logger: silentLogger });
  const client = new InferenceClient(engine.address!, credentials.createInsecure());
  try {
    await pool.ready("inference", 30_000);
    const user = await db.repos.users.create({ username: "bench" });
    // With the conversation locks, as the runner (runner.ts) calls it.
    const deps = { repos: db.repos, pool, logger: silentLogger, locks: new ConversationLocks() };
    const opts: TurnOptions = { maxTokens: GEN, sampling: SAMPLING };
    let sessions = 0;

    const controlPlane = async (content: string): Promise<Run> => {
      const conv = await db.repos.conversations.create(user.id);
      const t0 = performance.now();
      const arrivals: { at: number; tokens: number }[] = [];
      let promptTokens = 0;
      let prevIndex = -1;
      for await (const ev of turn(deps, { userId: user.id, conversationId: conv.id, content }, opts)) {
        if (ev.type === "delta") {
          const at = performance.now();
          // A delta's token count is the next one's index minus its own (the last one's from the usage).
          if (arrivals.length > 0) arrivals[arrivals.length - 1]!.tokens = ev.index - prevIndex;
          arrivals.push({ at, tokens: 0 });
          prevIndex = ev.index;
        } else if (ev.type === "started") promptTokens = ev.promptTokens;
        else if (ev.type === "done") {
          const end = performance.now();
          if (ev.status !== "COMPLETED") throw new Error(`the turn ended ${ev.status} (${ev.finishReason})`);
          const n = ev.usage.completionTokens;
          if (arrivals.length > 0) arrivals[arrivals.length - 1]!.tokens = n - prevIndex;
          return timed(t0, arrivals, end, promptTokens, n, ev.text, (ev.timings.queueMs ?? 0) + (ev.timings.prefillMs ?? 0));
        } else if (ev.type === "error") throw new Error(`the turn failed: ${ev.errorType}: ${ev.message}`);
        // other event types (e.g. "accepted") are not timed
      }
      throw new Error("the turn ended without a done event");
    };
    const messagesFor = (content: string): ChatMessage[] => [systemMessage(DEFAULT_SYSTEM_PROMPT, [], undefined), { role: "user", content }];
    const directRun = (content: string) => direct(client, messagesFor(content), `bench-direct-${++sessions}`);

    // A message the model answers with all GEN tokens; also warms the engine.
    let content: string | undefined;
    for (const c of CANDIDATES) {
      const r = await directRun(c);
      log(`probe ${JSON.stringify(c.slice(0, 40))}: ${r.completionTokens} tokens`);
      if (r.completionTokens === GEN) {
        content = c;
        break;
      }
    }
    if (!content) throw new Error(`no candidate message makes the model generate ${GEN} tokens; add one to CANDIDATES`);

    // Warm-up of both paths (PGlite, Prisma, the pool's channel), not measured.
    const wd = await directRun(content);
    const wc = await controlPlane(content);
    log(`warm-up: direct ttft ${round(wd.ttftMs)} ms ${round(wd.decodeTps)} t/s; control plane ttft ${round(wc.ttftMs)} ms ${round(wc.decodeTps)} t/s`);

    const d: Run[] = [];
    const c: Run[] = [];
    for (let i = 0; i < RUNS; i++) {
      // ABAB, with the order flipped every other pair.
      const pair = i % 2 === 0 ? [() => directRun(content), () => controlPlane(content)] : [() => controlPlane(content), () => directRun(content)];
      const [a, b] = [await pair[0]!(), await pair[1]!()];
      const [dr, cr] = i % 2 === 0 ? [a, b] : [b, a];
      d.push(dr);
      c.push(cr);
      log(
        `run ${i + 1}: engine queue+prefill ${round(dr.engineMs)} / ${round(cr.engineMs)} ms; direct ttft ${round(dr.ttftMs)} ms ${round(dr.decodeTps)} t/s (${dr.promptTokens}+${dr.completionTokens} tokens) | ` +
          `control plane ttft ${round(cr.ttftMs)} ms ${round(cr.decodeTps)} t/s (${cr.promptTokens}+${cr.completionTokens} tokens), tail ${round(cr.tailMs)} ms`,
      );
    }

    const sameTokens = d.every((r, i) => r.promptTokens === c[i]!.promptTokens && r.completionTokens === c[i]!.completionTokens);
    const sameText = d.every((r, i) => r.text === c[i]!.text);
    if (!sameTokens) log("WARNING: the two sides' token counts differ (see the runs above): the comparison is not like for like");
    const directTps = median(d.map((r) => r.decodeTps));
    const cpTps = median(c.map((r) => r.decodeTps));
    const directTtft = median(d.map((r) => r.ttftMs));
    const cpTtft = median(c.map((r) => r.ttftMs));
    const result = {
      bench: "control-plane",
      model: "models/test/bench-chat.gguf (SmolLM2-135M shapes, random weights)",
      threads: THREADS,
      database: "pglite",
      runs: RUNS,
      prompt_tokens: d[0]!.promptTokens,
      completion_tokens: d[0]!.completionTokens,
      same_tokens: sameTokens,
      same_text: sameText,
      direct_tps: round(directTps),
      control_plane_tps: round(cpTps),
      tps_ratio: round(cpTps / directTps, 3),
      // the same from each pair, less sensitive to drift between pairs
      tps_ratio_paired_p50: round(median(c.map((r, i) => r.decodeTps / d[i]!.decodeTps)), 3),
      direct_ttft_ms_p50: round(directTtft, 2),
      control_plane_ttft_ms_p50: round(cpTtft, 2),
      // median of the per-pair differences (cp - direct)
      added_ttft_ms_p50: round(median(c.map((r, i) => r.ttftMs - d[i]!.ttftMs)), 2),
      added_ttft_ms_mean: round(c.reduce((sum, r, i) => sum + r.ttftMs - d[i]!.ttftMs, 0) / RUNS, 2),
      // the same, less the engine's own queue + prefill time on each side:
      // what the control plane adds outside the engine, without the prefill's
      // run-to-run spread (tens of ms on this machine); the engine's medians
      // show whether the control plane's CPU slowed the prefill itself
      added_ttft_outside_engine_ms_p50: round(median(c.map((r, i) => r.ttftMs - r.engineMs - (d[i]!.ttftMs - d[i]!.engineMs))), 2),
      direct_engine_prefill_ms_p50: round(median(d.map((r) => r.engineMs)), 2),
      control_plane_engine_prefill_ms_p50: round(median(c.map((r) => r.engineMs)), 2),
      control_plane_tail_ms_p50: round(median(c.map((r) => r.tailMs)), 2),
    };
    console.log(JSON.stringify(result));
  } finally {
    client.close();
    pool.close();
    await db.close();
    await engine.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
