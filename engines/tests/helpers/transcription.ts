// Shared by the transcription engine's tests and its benchmark: WAV files,
// the jfk.wav sample, whisper-cli as the reference, and a Stream driver.
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import {
  AudioEncoding,
  type StreamConfig,
  TranscriptionClient,
  type TranscriptEvent,
  type TranscriptionInfo,
} from "../../../control-plane/src/gen/jota/v1/transcription";
import { repoRoot } from "../../../control-plane/src/config/paths";
import { buildBin, requireFile, testModel, unary } from "../../../control-plane/test/helpers/engines";
import type { EngineProcess } from "../../../control-plane/src/index";

export const RATE = 16000;
export const jfkWav = () => requireFile(path.join(repoRoot, "third_party/whisper.cpp/bindings/go/samples/jfk.wav"));
export const whisperModel = () => requireFile(testModel("tiny-whisper.bin"));

/** The 16-bit mono samples of a canonical PCM16 WAV (such as jfk.wav). */
export function readPcm16Wav(file: string): Int16Array {
  const buf = fs.readFileSync(file);
  let pos = 12;
  while (pos + 8 <= buf.length) {
    const id = buf.toString("latin1", pos, pos + 4);
    const size = buf.readUInt32LE(pos + 4);
    if (id === "data") {
      const data = buf.subarray(pos + 8, pos + 8 + size);
      return new Int16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
    }
    pos += 8 + size + (size & 1);
  }
  throw new Error(`${file}: no data chunk`);
}

export type WavSampleFormat = "u8" | "s16" | "s24" | "s32" | "f32";

/** A WAV file of interleaved samples in [-1, 1]. */
export function encodeWav(samples: Float32Array, opts: { rate: number; channels?: number; format?: WavSampleFormat }): Buffer {
  const channels = opts.channels ?? 1;
  const format = opts.format ?? "s16";
  const bytes = { u8: 1, s16: 2, s24: 3, s32: 4, f32: 4 }[format];
  const data = Buffer.alloc(samples.length * bytes);
  samples.forEach((v, i) => {
    const x = Math.max(-1, Math.min(1, v));
    const o = i * bytes;
    if (format === "u8") data.writeUInt8(Math.round(x * 127) + 128, o);
    else if (format === "s16") data.writeInt16LE(Math.round(x * 32767), o);
    else if (format === "s24") data.writeIntLE(Math.round(x * 8388607), o, 3);
    else if (format === "s32") data.writeInt32LE(Math.round(x * 2147483647), o);
    else data.writeFloatLE(v, o);
  });
  const fmt = Buffer.alloc(24);
  fmt.write("fmt ", 0, "latin1");
  fmt.writeUInt32LE(16, 4);
  fmt.writeUInt16LE(format === "f32" ? 3 : 1, 8);
  fmt.writeUInt16LE(channels, 10);
  fmt.writeUInt32LE(opts.rate, 12);
  fmt.writeUInt32LE(opts.rate * channels * bytes, 16);
  fmt.writeUInt16LE(channels * bytes, 20);
  fmt.writeUInt16LE(bytes * 8, 22);
  const head = Buffer.alloc(12);
  head.write("RIFF", 0, "latin1");
  head.writeUInt32LE(4 + fmt.length + 8 + data.length, 4);
  head.write("WAVE", 8, "latin1");
  const dataHead = Buffer.alloc(8);
  dataHead.write("data", 0, "latin1");
  dataHead.writeUInt32LE(data.length, 4);
  return Buffer.concat([head, fmt, dataHead, data]);
}

/**
 * 16-bit samples as a WAV of a wider or other format holding exactly the same
 * values once decoded (s24 = s16 << 8, s32 = s16 << 16, f32 = s16 / 32768),
 * each sample repeated on every channel.
 */
export function exactWav(samples: Int16Array, format: "s16" | "s24" | "s32" | "f32", channels = 1, rate = RATE): Buffer {
  const bytes = { s16: 2, s24: 3, s32: 4, f32: 4 }[format];
  const data = Buffer.alloc(samples.length * bytes * channels);
  let o = 0;
  for (const v of samples)
    for (let c = 0; c < channels; c++, o += bytes) {
      if (format === "s16") data.writeInt16LE(v, o);
      else if (format === "s24") data.writeIntLE(v * 256, o, 3);
      else if (format === "s32") data.writeInt32LE(v * 65536, o);
      else data.writeFloatLE(v / 32768, o);
    }
  const wav = encodeWav(new Float32Array(0), { rate, channels, format });
  wav.writeUInt32LE(wav.length - 8 + data.length, 4);
  wav.writeUInt32LE(data.length, wav.length - 4);
  return Buffer.concat([wav, data]);
}

export const pcm16Bytes = (s: Int16Array) => Buffer.from(s.buffer, s.byteOffset, s.byteLength);
export const pcm16Wav = (s: Int16Array, rate = RATE) =>
  encodeWav(Float32Array.from(s, (v) => v / 32768), { rate, format: "s16" });

export interface CliSegment {
  from: number; // ms
  to: number;
  text: string;
}

/** whisper-cli (built from the same sources) on a file: its JSON output. */
export async function whisperCli(wav: string, args: string[]): Promise<{ segments: CliSegment[]; ms: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "jota-whisper-cli-"));
  try {
    const started = performance.now();
    await promisify(execFile)(
      requireFile(buildBin("whisper-cli")),
      ["-m", whisperModel(), "-f", wav, "-oj", "-of", path.join(dir, "out"), "-np", ...args],
      { maxBuffer: 64 << 20 },
    );
    const ms = performance.now() - started;
    const json = JSON.parse(fs.readFileSync(path.join(dir, "out.json"), "utf8")) as {
      transcription: { offsets: { from: number; to: number }; text: string }[];
    };
    return { segments: json.transcription.map((s) => ({ from: s.offsets.from, to: s.offsets.to, text: s.text })), ms };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export const sttClient = (engine: EngineProcess) => new TranscriptionClient(engine.address!, credentials.createInsecure());

export const info = (client: TranscriptionClient, md = new Metadata()) =>
  unary<TranscriptionInfo>((cb) => client.info({}, md, cb));

export function streamConfig(over: Partial<StreamConfig> = {}): StreamConfig {
  return {
    format: { sampleRate: RATE, encoding: AudioEncoding.AUDIO_ENCODING_PCM16LE, channels: 1 },
    language: "",
    translate: false,
    initialPrompt: "",
    vad: undefined,
    partialIntervalMs: 0,
    requestId: "",
    ...over,
  };
}

export interface StreamResult {
  events: TranscriptEvent[];
  /** OK, or the error the call ended with. */
  code: status;
  details: string;
}

export interface StreamPlan {
  config?: StreamConfig;
  /** Written in order after the config (raw AudioIn messages are allowed for bad-input tests). */
  chunks: Buffer[];
  metadata?: Metadata;
  /** Wait this long between chunks (real-time pacing). */
  paceMs?: (chunk: Buffer, index: number) => number;
  /** Half-close at the end (default), or leave the stream open for the caller. */
  halfClose?: boolean;
  onEvent?: (e: TranscriptEvent, at: number) => void;
  /** Called as chunk `index` is handed to grpc-js (performance.now() time). */
  onWrite?: (index: number, at: number) => void;
}

/** Runs one Stream call; resolves when the server ends it. */
export function runStream(client: TranscriptionClient, plan: StreamPlan): { done: Promise<StreamResult>; cancel: () => void } {
  const call = client.stream(plan.metadata ?? new Metadata());
  const events: TranscriptEvent[] = [];
  const done = new Promise<StreamResult>((resolve) => {
    call.on("data", (e: TranscriptEvent) => {
      events.push(e);
      plan.onEvent?.(e, performance.now());
    });
    call.on("error", (err: ServiceError) => resolve({ events, code: err.code, details: err.details }));
    call.on("end", () => resolve({ events, code: status.OK, details: "" }));
  });
  void (async () => {
    if (plan.config) call.write({ msg: { $case: "config", value: plan.config } });
    for (let i = 0; i < plan.chunks.length; i++) {
      const wait = plan.paceMs?.(plan.chunks[i], i) ?? 0;
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (call.destroyed || call.writableEnded) return;
      plan.onWrite?.(i, performance.now());
      // Keep grpc-js's send buffer bounded: wait for it to drain.
      if (!call.write({ msg: { $case: "audio", value: plan.chunks[i] } })) await new Promise((r) => call.once("drain", r));
    }
    if (plan.halfClose !== false) call.end();
  })();
  return { done, cancel: () => call.cancel() };
}

/** Splits bytes into chunks of random whole-frame sizes (a seeded PRNG). */
export function randomChunks(bytes: Buffer, frameBytes: number, rand: () => number, maxFrames = 4000): Buffer[] {
  const out: Buffer[] = [];
  for (let pos = 0; pos < bytes.length; ) {
    const n = (1 + Math.floor(rand() * maxFrames)) * frameBytes;
    out.push(bytes.subarray(pos, pos + n));
    pos += n;
  }
  return out;
}

/** Deterministic PRNG (mulberry32) so a failing case can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Polls `probe` until it holds (a condition wait, not a timing assertion). */
export async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const finals = (events: TranscriptEvent[]) =>
  events.flatMap((e) => (e.event?.$case === "final" ? [e.event.value] : []));
export const partials = (events: TranscriptEvent[]) =>
  events.flatMap((e) => (e.event?.$case === "partial" ? [e.event.value] : []));
