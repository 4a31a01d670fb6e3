// npm run bench:transcription — jota-transcription against whisper-cli, then
// live streaming. On the generated whisper model (tiny.en shapes, random
// weights: real tiny.en speed, gibberish text), 2 threads:
//   1. whisper-cli on jfk.wav vs the engine's Transcribe of the same file
//      (same greedy parameters; whisper-cli's time includes its start-up and
//      model load, which the engine pays once);
//   2. Stream fed at real-time pace with the VAD on: latency from the end of
//      each utterance's speech to its final, and the real-time factor.
// The last line of output is one JSON object with the figures.
import fs from "node:fs";
import { status } from "@grpc/grpc-js";
import type { TranscribeResponse } from "../../control-plane/src/gen/jota/v1/transcription";
import { startEngine, unary } from "../../control-plane/test/helpers/engines";
import {
  finals,
  info,
  jfkWav,
  partials,
  pcm16Bytes,
  RATE,
  readPcm16Wav,
  runStream,
  streamConfig,
  sttClient,
  whisperCli,
  whisperModel,
} from "../../engines/tests/helpers/transcription";

const THREADS = 2;
const FILE_RUNS = 3;
const HANGOVER_MS = 500;
const GAP_S = 2.5; // room noise between utterances
const CHUNK_MS = 20; // a microphone's packet

const median = (xs: number[]) => percentile(xs, 50);
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const rank = (p / 100) * (s.length - 1);
  const lo = Math.floor(rank);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (rank - lo);
}
const round = (x: number, digits = 1) => Number(x.toFixed(digits));

async function main() {
  const jfkPath = jfkWav();
  const jfk = readPcm16Wav(jfkPath);
  const engine = await startEngine({ kind: "transcription", args: ["--model", whisperModel(), "--threads", String(THREADS), "--streams", "1"] });
  const client = sttClient(engine);
  try {
    // --- 1. a file: whisper-cli vs Transcribe, alternating, median of runs ---
    const wav = fs.readFileSync(jfkPath);
    const cliMs: number[] = [];
    const engineMs: number[] = [];
    const decodeMs: number[] = [];
    for (let i = 0; i < FILE_RUNS; i++) {
      cliMs.push((await whisperCli(jfkPath, ["-t", String(THREADS), "-bs", "1"])).ms);
      const started = performance.now();
      const res = await unary<TranscribeResponse>((cb) =>
        client.transcribe({ audio: { $case: "wav", value: wav }, format: undefined, language: "", translate: false, initialPrompt: "", requestId: "bench" }, cb),
      );
      engineMs.push(performance.now() - started);
      decodeMs.push(res.decodeMs);
      console.log(`file run ${i + 1}/${FILE_RUNS}: whisper-cli ${cliMs[i].toFixed(0)} ms, engine Transcribe ${engineMs[i].toFixed(0)} ms (decode ${res.decodeMs.toFixed(0)} ms)`);
    }

    // --- 2. a live stream: jfk's phrases between stretches of its room noise ---
    const cut = (from: number, to: number) => jfk.subarray(Math.round(from * RATE), Math.round(to * RATE));
    const phrases = [cut(0.32, 1.98), cut(3.28, 4.29), cut(5.4, 7.52), cut(8.17, 10.2)];
    const room = cut(2.2, 3.2);
    const parts: Int16Array[] = [];
    const speechEnds: number[] = []; // sample index where each utterance's speech ends
    let length = 0;
    const push = (p: Int16Array) => {
      parts.push(p);
      length += p.length;
    };
    const gap = () => push(Int16Array.from({ length: Math.round(GAP_S * RATE) }, (_, i) => room[i % room.length]));
    gap();
    for (let pass = 0; pass < 2; pass++)
      for (const p of phrases) {
        push(p);
        speechEnds.push(length);
        gap();
      }
    const audio = new Int16Array(length);
    let at = 0;
    for (const p of parts) {
      audio.set(p, at);
      at += p.length;
    }
    const bytes = pcm16Bytes(audio);
    const chunkBytes = (RATE * CHUNK_MS) / 1000 * 2;
    const chunks: Buffer[] = [];
    for (let pos = 0; pos < bytes.length; pos += chunkBytes) chunks.push(bytes.subarray(pos, pos + chunkBytes));

    // Drift-free pacing: chunk i is due at start + its audio time.
    const sentAt: number[] = [];
    let start = 0;
    const arrivals = new Map<number, number>();
    const run = runStream(client, {
      config: streamConfig({
        partialIntervalMs: 500,
        vad: { enabled: true, thresholdDb: 0, hangoverMs: HANGOVER_MS, minSpeechMs: 0, maxUtteranceMs: 0, preRollMs: 0 },
        requestId: "bench-stream",
      }),
      chunks,
      paceMs: (_chunk, i) => {
        if (i === 0) start = performance.now();
        return Math.max(0, start + i * CHUNK_MS - performance.now());
      },
      onWrite: (i, when) => (sentAt[i] = when),
      onEvent: (e, when) => {
        if (e.event?.$case === "final") arrivals.set(e.event.value.utterance, when);
      },
    });
    const result = await run.done;
    if (result.code !== status.OK) throw new Error(`stream failed: ${status[result.code]} ${result.details}`);
    const utterances = finals(result.events);
    if (utterances.length !== speechEnds.length)
      throw new Error(`expected ${speechEnds.length} utterances, the VAD found ${utterances.length}: ${utterances.map((f) => `${f.startS}-${f.endS}`).join(", ")}`);

    const latencies: number[] = [];
    const excess: number[] = [];
    for (const f of utterances) {
      // The wall time at which the last sample of this utterance's speech was sent.
      const chunkIndex = Math.floor(((speechEnds[f.utterance] - 1) * 2) / chunkBytes);
      const endSent = sentAt[chunkIndex];
      const latency = arrivals.get(f.utterance)! - endSent;
      latencies.push(latency);
      excess.push(latency - (HANGOVER_MS + 1.2 * f.decodeMs));
      console.log(
        `utterance ${f.utterance}: speech ${f.startS.toFixed(2)}-${f.endS.toFixed(2)} s, final ${latency.toFixed(0)} ms after the end of speech (decode ${f.decodeMs.toFixed(0)} ms)`,
      );
    }
    const audioS = audio.length / RATE;
    const finalDecodeMs = utterances.reduce((n, f) => n + f.decodeMs, 0);
    const counters = (await info(client)).counters!;

    const summary = {
      bench: "transcription",
      model: "models/test/tiny-whisper.bin (tiny.en shapes, random weights)",
      threads: THREADS,
      file: "jfk.wav (11 s)",
      engine_ms: round(median(engineMs)),
      engine_decode_ms: round(median(decodeMs)),
      whisper_cli_ms: round(median(cliMs)),
      file_ratio: round(median(engineMs) / median(cliMs), 3),
      file_rtf: round(median(engineMs) / 1000 / (jfk.length / RATE), 3),
      stream_audio_s: round(audioS),
      utterances: utterances.length,
      hangover_ms: HANGOVER_MS,
      final_latency_p50_ms: round(percentile(latencies, 50)),
      final_latency_p95_ms: round(percentile(latencies, 95)),
      final_decode_p50_ms: round(median(utterances.map((f) => f.decodeMs))),
      // p95 of (latency - (hangover + 1.2 x that utterance's decode)): <= 0 meets the target.
      latency_over_target_p95_ms: round(percentile(excess, 95)),
      latency_target_met: percentile(excess, 95) <= 0,
      rtf: round(finalDecodeMs / 1000 / audioS, 3),
      partials: partials(result.events).length,
      partials_skipped: Number(counters.partialsSkipped),
    };
    console.log(JSON.stringify(summary));
  } finally {
    client.close();
    await engine.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
