// How calls end when the client or the engine goes away: the idle limit
// (--stream-idle-s), SIGTERM with streams and files in progress, and the
// Silero VAD load, which a stream refused admission never pays for.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { status } from "@grpc/grpc-js";
import type { TranscribeResponse, TranscriptionClient } from "../../control-plane/src/gen/jota/v1/transcription";
import type { EngineProcess } from "../../control-plane/src/index";
import { buildBin, startEngine, unary } from "../../control-plane/test/helpers/engines";
import {
  finals,
  info,
  jfkWav,
  pcm16Bytes,
  pcm16Wav,
  RATE,
  readPcm16Wav,
  runStream,
  streamConfig,
  sttClient,
  waitFor,
  whisperModel,
} from "./helpers/transcription";

const jfk = readPcm16Wav(jfkWav());
const vadOn = streamConfig({ vad: { enabled: true, thresholdDb: 0, hangoverMs: 0, minSpeechMs: 0, maxUtteranceMs: 0, preRollMs: 0 } });

/** jfk.wav over and over, `seconds` long. */
function speech(seconds: number): Int16Array {
  const out = new Int16Array(Math.round(seconds * RATE));
  for (let pos = 0; pos < out.length; pos += jfk.length) out.set(jfk.subarray(0, Math.min(jfk.length, out.length - pos)), pos);
  return out;
}

/** The call's end, or a failure after `ms` (a call that never ends is the bug). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not over after ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * Whether a final of `seconds` decodes well inside the 3 s the engine gives
 * work in progress at shutdown, on this machine now (timed alone, on a
 * stream of its own). About a second unloaded; a machine busy with other
 * work can take longer, and then the flush is cut short (still UNAVAILABLE).
 */
async function fitsFlushTime(client: TranscriptionClient, seconds: number): Promise<boolean> {
  const started = performance.now();
  const r = await runStream(client, { config: streamConfig(), chunks: [pcm16Bytes(speech(seconds))] }).done;
  assert.equal(r.code, status.OK, r.details);
  return performance.now() - started < 1500;
}

const fileRequest = (pcm: Int16Array) => ({
  audio: { $case: "wav" as const, value: pcm16Wav(pcm) }, format: undefined, language: "", translate: false, initialPrompt: "", requestId: "",
});

describe("transcription idle limit (--stream-idle-s 1, --streams 1, --queue-max 0)", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let client: TranscriptionClient;

  before(async () => {
    engine = await startEngine({
      kind: "transcription",
      args: ["--model", whisperModel(), "--threads", "2", "--streams", "1", "--queue-max", "0", "--stream-idle-s", "1", "--no-fallback"],
    });
    client = sttClient(engine);
  });
  after(async () => {
    client?.close();
    await engine?.stop();
  });
  afterEach(async () => waitFor("the decoder to be free", async () => (await info(client)).streamsActive === 0));

  it("a stream that goes quiet ends DEADLINE_EXCEEDED, and its decoder is free again", async () => {
    const started = performance.now();
    const quiet = runStream(client, { config: vadOn, chunks: [pcm16Bytes(jfk.subarray(0, RATE / 2))], halfClose: false });
    const r = await within(quiet.done, 10_000, "the idle stream");
    assert.equal(r.code, status.DEADLINE_EXCEEDED, `${status[r.code]}: ${r.details}`);
    assert.match(r.details, /no message for 1 s \(--stream-idle-s\); the stream was closed/);
    assert.ok(performance.now() - started >= 1000);
    // The only decoder: a stream refused RESOURCE_EXHAUSTED would show it still held.
    const next = await runStream(client, { config: streamConfig(), chunks: [pcm16Bytes(jfk.subarray(0, RATE))] }).done;
    assert.equal(next.code, status.OK, next.details);
    assert.equal(finals(next.events).length, 1);
  });

  it("a stream that never sends its config ends DEADLINE_EXCEEDED too", async () => {
    const r = await within(runStream(client, { chunks: [], halfClose: false }).done, 10_000, "the stream without a config");
    assert.equal(r.code, status.DEADLINE_EXCEEDED, `${status[r.code]}: ${r.details}`);
    assert.match(r.details, /no config message within 1 s \(--stream-idle-s\)/);
  });

  it("the limit is on the gaps, not the length: a paced stream runs well past it", async () => {
    const chunks = Array.from({ length: 8 }, (_, i) => pcm16Bytes(jfk.subarray(i * RATE / 10, (i + 1) * RATE / 10)));
    const r = await runStream(client, { config: streamConfig(), chunks, paceMs: () => 400 }).done;
    assert.equal(r.code, status.OK, r.details);
    assert.equal(finals(r.events).length, 1);
  });

  it("--help lists the flag; a bad value stops start-up with exit code 2", async () => {
    const run = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      new Promise<{ code: number; out: string }>((resolve) => {
        execFile(buildBin("jota-transcription"), args, { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
          resolve({ code: err ? Number(err.code) : 0, out: stdout + stderr }),
        );
      });
    const help = await run(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.out, /--stream-idle-s/);
    assert.match(help.out, /JOTA_WHISPER_STREAM_IDLE_S/);
    const negative = await run(["--model", whisperModel(), "--stream-idle-s", "-1"]);
    assert.equal(negative.code, 2, negative.out);
    assert.match(negative.out, /--stream-idle-s \(flag\): -1 is outside \[0/);
    const fromEnv = await run(["--model", whisperModel()], { JOTA_WHISPER_STREAM_IDLE_S: "soon" });
    assert.equal(fromEnv.code, 2, fromEnv.out);
    assert.match(fromEnv.out, /--stream-idle-s \(env JOTA_WHISPER_STREAM_IDLE_S\): 'soon' is not an integer/);
  });
});

describe("transcription shutdown (SIGTERM with work in progress)", function () {
  this.timeout(180_000);
  let engine: EngineProcess | undefined;
  let client: TranscriptionClient | undefined;

  const start = async (args: string[] = []) => {
    engine = await startEngine({ kind: "transcription", args: ["--model", whisperModel(), "--threads", "2", "--streams", "1", ...args] });
    client = sttClient(engine);
    return client;
  };
  afterEach(async () => {
    client?.close();
    await engine?.stop();
  });

  it("an open stream: the audio received becomes a final, then UNAVAILABLE (the rest was never read)", async () => {
    const c = await start();
    const fits = await fitsFlushTime(c, 2);
    const open = runStream(c, { config: streamConfig(), chunks: [pcm16Bytes(speech(2))], halfClose: false });
    await waitFor("the engine to have the audio", async () => (await info(c)).counters!.audioSeconds >= 4);
    const stopped = engine!.stop();
    const r = await within(open.done, 15_000, "the stream at shutdown");
    await stopped;
    assert.equal(r.code, status.UNAVAILABLE, `${status[r.code]}: ${r.details}`);
    if (!fits) return assert.match(r.details, /the engine is shutting down/);
    assert.equal(r.details, "the engine is shutting down: the stream's first 2.00 s were transcribed, the rest was not read");
    const f = finals(r.events);
    assert.equal(f.length, 1, JSON.stringify(r.events));
    assert.equal(f[0].endS, 2);
  });

  it("a half-closed stream whose final is decoding: the final still comes, and OK means it did", async () => {
    // Long enough that the signal lands while its final decodes (whisper
    // pads every window to 30 s, so this costs about what 2 s cost).
    const c = await start();
    const fits = await fitsFlushTime(c, 20);
    const done = runStream(c, { config: streamConfig(), chunks: [pcm16Bytes(speech(20))] }).done;
    await waitFor("the engine to have the audio", async () => (await info(c)).counters!.audioSeconds >= 40);
    const stopped = engine!.stop();
    const r = await within(done, 15_000, "the stream at shutdown");
    await stopped;
    const f = finals(r.events);
    // OK, or (should the signal overtake the half-close) UNAVAILABLE after
    // the same final; never OK without it.
    if (r.code === status.OK || fits) {
      if (r.code !== status.OK) {
        assert.equal(r.code, status.UNAVAILABLE, `${status[r.code]}: ${r.details}`);
        assert.match(r.details, /first 20\.00 s were transcribed/);
      }
      assert.equal(f.length, 1, `${status[r.code]} ${r.details}: ${JSON.stringify(r.events)}`);
      assert.equal(f[0].endS, 20);
    } else {
      assert.equal(r.code, status.UNAVAILABLE, `${status[r.code]}: ${r.details}`);
      assert.match(r.details, /the engine is shutting down/);
    }
  });

  it("a file still decoding when the flush time is up: UNAVAILABLE, not CANCELLED (the client did not cancel)", async () => {
    // Five minutes with temperature fallback: far longer to decode than the
    // seconds the engine gives work in progress at shutdown.
    const c = await start();
    const call = unary<TranscribeResponse>((cb) => c.transcribe(fileRequest(speech(300)), cb));
    await waitFor("the decode to start", async () => (await info(c)).streamsActive === 1);
    const stopped = engine!.stop();
    await assert.rejects(within(call, 15_000, "the file at shutdown"), (e: { code: number; details: string }) => {
      assert.equal(e.code, status.UNAVAILABLE, `${status[e.code]}: ${e.details}`);
      assert.match(e.details, /the engine is shutting down: the file was not finished in time; send it to another engine/);
      return true;
    });
    await stopped;
  });
});

/**
 * A Silero VAD file in whisper.cpp's ggml layout (models/convert-silero-vad-to-ggml.py)
 * with every weight 0: it loads and runs, and says "maybe" (p = 0.5) to everything.
 */
function zeroSileroModel(file: string) {
  const ints = (...v: number[]) => Buffer.from(Int32Array.from(v).buffer);
  const parts: Buffer[] = [ints(0x67676d6c, 10), Buffer.from("silero-16k"), ints(5, 1, 2, 512, 64, 4)];
  const enc = [[129, 128], [128, 64], [64, 64], [64, 128]];
  for (const [inCh, outCh] of enc) parts.push(ints(inCh, outCh, 3));
  parts.push(ints(128, 128, 128, 1));
  const tensor = (name: string, f16: boolean, dims: number[]) => {
    parts.push(ints(dims.length, Buffer.byteLength(name), f16 ? 1 : 0, ...dims), Buffer.from(name));
    parts.push(Buffer.alloc(dims.reduce((a, b) => a * b, 1) * (f16 ? 2 : 4)));
  };
  enc.forEach(([inCh, outCh], i) => {
    tensor(`_model.encoder.${i}.reparam_conv.weight`, true, [3, inCh, outCh]);
    tensor(`_model.encoder.${i}.reparam_conv.bias`, false, [outCh]);
  });
  tensor("_model.decoder.rnn.weight_ih", false, [128, 512]);
  tensor("_model.decoder.rnn.weight_hh", false, [128, 512]);
  tensor("_model.decoder.rnn.bias_ih", false, [512]);
  tensor("_model.decoder.rnn.bias_hh", false, [512]);
  tensor("_model.decoder.decoder.2.weight", true, [128, 1]);
  tensor("_model.decoder.decoder.2.bias", false, [1]);
  tensor("_model.stft.forward_basis_buffer", true, [256, 1, 258]);
  fs.writeFileSync(file, Buffer.concat(parts));
}

describe("transcription Silero VAD (--vad-model, --streams 1, --queue-max 0)", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let client: TranscriptionClient;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "jota-silero-"));
  const vadModel = path.join(dir, "silero-zero.bin");

  before(async () => {
    zeroSileroModel(vadModel);
    engine = await startEngine({
      kind: "transcription",
      args: ["--model", whisperModel(), "--threads", "2", "--streams", "1", "--queue-max", "0", "--vad-model", vadModel, "--no-fallback"],
    });
    client = sttClient(engine);
  });
  after(async () => {
    client?.close();
    await engine?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("the model is loaded once a stream has its decoder: a refused stream never touches it", async () => {
    const held = runStream(client, { config: vadOn, chunks: [pcm16Bytes(jfk.subarray(0, RATE))], halfClose: false });
    await waitFor("the stream to hold the decoder", async () => (await info(client)).streamsActive === 1);
    // From here on every load fails, so a stream that tried one would say so.
    fs.writeFileSync(vadModel, "not a model any more");
    const refused = await runStream(client, { config: vadOn, chunks: [] }).done;
    assert.equal(refused.code, status.RESOURCE_EXHAUSTED, `${status[refused.code]}: ${refused.details}`);
    assert.match(refused.details, /all 1 decoders are busy/);
    held.cancel();
    assert.equal((await held.done).code, status.CANCELLED);
    await waitFor("the decoder to be free", async () => (await info(client)).streamsActive === 0);
    // Admitted, it does load (and fails, the file being gone), and gives the decoder back.
    const admitted = await runStream(client, { config: vadOn, chunks: [] }).done;
    assert.equal(admitted.code, status.INTERNAL, `${status[admitted.code]}: ${admitted.details}`);
    assert.match(admitted.details, /could not load the Silero VAD model/);
    await waitFor("the decoder to be free", async () => (await info(client)).streamsActive === 0);
  });
});
