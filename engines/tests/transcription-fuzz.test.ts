// Random configs, random bytes in random chunks, random endings: every call
// ends with an expected status and the engine stays up and serving.
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import {
  AudioEncoding,
  type AudioIn,
  type StreamConfig,
  type TranscribeRequest,
  type TranscribeResponse,
  type TranscriptionClient,
} from "../../control-plane/src/gen/jota/v1/transcription";
import { checkHealth } from "../../control-plane/src/engines/health";
import type { EngineProcess } from "../../control-plane/src/index";
import { processGone, startEngine, unary } from "../../control-plane/test/helpers/engines";
import { encodeWav, info, prng, RATE, sttClient, whisperModel } from "./helpers/transcription";

const SEED = Number(process.env.JOTA_FUZZ_SEED ?? 1337);
const CASES = 40;
const EXPECTED = new Set([status.OK, status.INVALID_ARGUMENT, status.OUT_OF_RANGE, status.CANCELLED, status.RESOURCE_EXHAUSTED]);

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: Rand, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
const bytes = (r: Rand, n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(r() * 256)));

function randomConfig(r: Rand): StreamConfig {
  const maybe = <T>(good: T, bad: T) => (r() < 0.85 ? good : bad);
  return {
    format: r() < 0.05 ? undefined : {
      sampleRate: maybe(pick(r, [16000, 8000, 44100, 48000, 22050]), pick(r, [0, -1, 7999, 192001, 2 ** 31 - 1])),
      encoding: maybe(pick(r, [AudioEncoding.AUDIO_ENCODING_PCM16LE, AudioEncoding.AUDIO_ENCODING_FLOAT32LE]), pick(r, [0, 3, -2]) as AudioEncoding),
      channels: maybe(pick(r, [0, 1, 2]), pick(r, [-1, 9, 1000])),
    },
    language: maybe(pick(r, ["", "auto", "en"]), pick(r, ["xx", "de", "\u0000", "e".repeat(300)])),
    translate: r() < 0.05,
    initialPrompt: maybe(pick(r, ["", "Jota, lights, kitchen"]), bytes(r, int(r, 0, 6000)).toString("latin1")),
    vad: r() < 0.5 ? undefined : {
      enabled: r() < 0.8,
      thresholdDb: maybe(pick(r, [0, 6, 12, 30]), pick(r, [-1, 61, NaN, Infinity])),
      hangoverMs: maybe(pick(r, [0, 50, 300, 2000]), pick(r, [-1, 10, 100000])),
      minSpeechMs: maybe(pick(r, [0, 10, 200]), pick(r, [-5, 5, 20000])),
      maxUtteranceMs: maybe(pick(r, [0, 1000, 5000]), pick(r, [1, 999, 28001])),
      preRollMs: maybe(pick(r, [0, 10, 500]), pick(r, [-1, 1001])),
    },
    partialIntervalMs: maybe(pick(r, [0, 100, 300]), pick(r, [1, 99, -100, 60001])),
    requestId: `fuzz-${SEED}`,
  };
}

/** Messages after the (maybe missing) config: mostly audio of random sizes and values. */
function randomMessages(r: Rand): AudioIn[] {
  const out: AudioIn[] = [];
  for (let i = int(r, 0, 12); i > 0; i--) {
    const roll = r();
    if (roll < 0.03) out.push({ msg: undefined });
    else if (roll < 0.06) out.push({ msg: { $case: "config", value: randomConfig(r) } });
    else {
      // Whole frames mostly (so audio gets through), sometimes not.
      const n = r() < 0.85 ? int(r, 0, 4000) * 4 : int(r, 1, 9999);
      out.push({ msg: { $case: "audio", value: r() < 0.5 ? bytes(r, n) : Buffer.alloc(n) } });
    }
  }
  return out;
}

function fuzzStream(client: TranscriptionClient, r: Rand): Promise<number> {
  const call = client.stream();
  const done = new Promise<number>((resolve) => {
    call.on("data", () => {});
    call.on("error", (e: { code: number }) => resolve(e.code));
    call.on("end", () => resolve(status.OK));
  });
  if (r() < 0.95) call.write({ msg: { $case: "config", value: randomConfig(r) } });
  const messages = randomMessages(r);
  const cancelAt = r() < 0.3 ? int(r, 0, messages.length) : -1;
  messages.forEach((m, i) => {
    if (i === cancelAt) call.cancel();
    if (!call.destroyed) call.write(m);
  });
  if (cancelAt >= messages.length || cancelAt < 0) {
    if (cancelAt >= 0) call.cancel();
    else call.end();
  }
  return done;
}

function fuzzTranscribe(client: TranscriptionClient, r: Rand): Promise<number> {
  const roll = r();
  let audio: TranscribeRequest["audio"];
  if (roll < 0.3) {
    audio = { $case: "wav", value: bytes(r, int(r, 0, 200)) };
  } else if (roll < 0.6) {
    // A real WAV header with random damage.
    const wav = encodeWav(Float32Array.from({ length: int(r, 0, 8000) }, () => r() * 2 - 1), {
      rate: pick(r, [8000, 16000, 44100]), channels: int(r, 1, 2), format: pick(r, ["u8", "s16", "s24", "s32", "f32"] as const),
    });
    for (let k = int(r, 0, 4); k > 0; k--) wav[int(r, 0, Math.min(wav.length - 1, 60))] = int(r, 0, 255);
    audio = { $case: "wav", value: wav };
  } else if (roll < 0.9) {
    audio = { $case: "pcm", value: bytes(r, int(r, 0, 20000)) };
  }
  const req: TranscribeRequest = {
    audio,
    format: r() < 0.8 ? randomConfig(r).format : undefined,
    language: pick(r, ["", "en", "zz"]),
    translate: false,
    initialPrompt: "",
    requestId: `fuzz-${SEED}`,
  };
  return unary<TranscribeResponse>((cb) => client.transcribe(req, cb)).then(
    () => status.OK,
    (e: { code: number }) => e.code,
  );
}

describe("transcription fuzz", function () {
  this.timeout(300_000);
  let engine: EngineProcess;
  let client: TranscriptionClient;

  before(async () => {
    engine = await startEngine({
      kind: "transcription",
      args: ["--model", whisperModel(), "--threads", "2", "--streams", "2", "--queue-max", "2", "--max-audio-s", "3", "--no-fallback"],
    });
    client = sttClient(engine);
  });
  after(async () => {
    client?.close();
    await engine?.stop();
  });

  it(`${CASES} random streams and files (seed ${SEED}, JOTA_FUZZ_SEED to replay): expected statuses only, engine stays up`, async () => {
    const r = prng(SEED);
    const seen = new Map<number, number>();
    // Four at a time: enough to also meet the queue and RESOURCE_EXHAUSTED.
    for (let i = 0; i < CASES; i += 4) {
      const codes = await Promise.all(
        Array.from({ length: Math.min(4, CASES - i) }, () => (r() < 0.7 ? fuzzStream(client, r) : fuzzTranscribe(client, r))),
      );
      for (const c of codes) {
        assert.ok(EXPECTED.has(c), `unexpected status ${status[c] ?? c} (seed ${SEED}, batch ${i / 4})`);
        seen.set(c, (seen.get(c) ?? 0) + 1);
      }
      assert.equal(processGone(engine.pid!), false, "the engine died");
    }
    assert.ok((seen.get(status.INVALID_ARGUMENT) ?? 0) > 0, "the fuzzer reached validation");
    assert.ok((seen.get(status.OK) ?? 0) > 0, "the fuzzer reached decoding");
    assert.equal(await checkHealth(engine.address!, "jota.v1.Transcription"), "SERVING");
    const i = await info(client);
    assert.equal(i.ready, true);
    assert.equal(engine.restartCount, 0);
    // And it still does real work.
    const res = await unary<TranscribeResponse>((cb) =>
      client.transcribe(
        { audio: { $case: "pcm", value: Buffer.alloc(RATE * 2) }, format: { sampleRate: RATE, encoding: AudioEncoding.AUDIO_ENCODING_PCM16LE, channels: 1 }, language: "", translate: false, initialPrompt: "", requestId: "" },
        cb,
      ),
    );
    assert.equal(res.durationS, 1);
  });
});
