// Bad input gets a precise status and message, never a crash: configs,
// message order, sample alignment, files that are not WAV, rates, lengths,
// and the bearer token.
import assert from "node:assert/strict";
import { Metadata, status } from "@grpc/grpc-js";
import {
  AudioEncoding,
  type StreamConfig,
  type TranscribeRequest,
  type TranscribeResponse,
  type TranscriptionClient,
} from "../../control-plane/src/gen/jota/v1/transcription";
import { checkHealth } from "../../control-plane/src/engines/health";
import type { EngineProcess } from "../../control-plane/src/index";
import { bearer, processGone, startEngine, unary } from "../../control-plane/test/helpers/engines";
import { encodeWav, info, RATE, runStream, streamConfig, sttClient, whisperModel } from "./helpers/transcription";

const token = "stt-" + Math.random().toString(36).slice(2);
const pcm16 = { sampleRate: RATE, encoding: AudioEncoding.AUDIO_ENCODING_PCM16LE, channels: 1 };
const vad = (over: Partial<NonNullable<StreamConfig["vad"]>>) => ({
  enabled: true, thresholdDb: 0, hangoverMs: 0, minSpeechMs: 0, maxUtteranceMs: 0, preRollMs: 0, ...over,
});
const quiet = (seconds: number) => Buffer.alloc(Math.round(seconds * RATE) * 2);

describe("transcription errors (bad input never crashes the engine)", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let client: TranscriptionClient;
  const md = () => bearer(token);

  const stream = (config: StreamConfig | undefined, chunks: Buffer[] = [], metadata = md()) =>
    runStream(client, { config, chunks, metadata }).done;
  const transcribe = (req: Partial<TranscribeRequest>, metadata = md()) =>
    unary<TranscribeResponse>((cb) =>
      client.transcribe({ audio: undefined, format: undefined, language: "", translate: false, initialPrompt: "", requestId: "", ...req }, metadata, cb),
    );
  const rejects = (p: Promise<unknown>, code: status, message: RegExp) =>
    assert.rejects(p, (e: { code: number; details: string }) => {
      assert.equal(e.code, code, `${status[e.code]}: ${e.details}`);
      assert.match(e.details, message);
      return true;
    });
  async function streamFails(config: StreamConfig | undefined, chunks: Buffer[], code: status, message: RegExp) {
    const r = await stream(config, chunks);
    assert.equal(r.code, code, `${status[r.code]}: ${r.details}`);
    assert.match(r.details, message);
  }

  before(async () => {
    engine = await startEngine({
      kind: "transcription",
      token,
      args: ["--model", whisperModel(), "--threads", "2", "--max-audio-s", "2", "--no-fallback"],
    });
    client = sttClient(engine);
  });
  after(async () => {
    client?.close();
    await engine?.stop();
  });
  afterEach(async () => {
    // Whatever the last test sent, the engine is still up and serving.
    assert.equal(await checkHealth(engine.address!, "jota.v1.Transcription"), "SERVING");
    assert.equal(processGone(engine.pid!), false);
  });

  it("a missing or wrong bearer token: UNAUTHENTICATED", async () => {
    await rejects(transcribe({}, new Metadata()), status.UNAUTHENTICATED, /missing 'authorization: Bearer <token>'/);
    await rejects(transcribe({}, bearer("nope")), status.UNAUTHENTICATED, /invalid engine token/);
    await rejects(info(client), status.UNAUTHENTICATED, /missing/);
    const r = await stream(streamConfig(), [quiet(0.1)], bearer("nope"));
    assert.equal(r.code, status.UNAUTHENTICATED);
    assert.match(r.details, /invalid engine token/);
  });

  it("Stream: the config must come first, once, and be there at all", async () => {
    await streamFails(undefined, [quiet(0.1)], status.INVALID_ARGUMENT, /the first message must be `config`/);
    await streamFails(undefined, [], status.INVALID_ARGUMENT, /the stream ended before its config message/);

    const call = client.stream(md());
    const done = new Promise<{ code: number; details: string }>((resolve) => call.on("error", resolve).on("data", () => {}));
    call.write({ msg: { $case: "config", value: streamConfig() } });
    call.write({ msg: { $case: "config", value: streamConfig() } });
    call.end();
    const second = await done;
    assert.equal(second.code, status.INVALID_ARGUMENT);
    assert.match(second.details, /config may only be sent once/);

    const empty = client.stream(md());
    const emptyDone = new Promise<{ code: number; details: string }>((resolve) => empty.on("error", resolve).on("data", () => {}));
    empty.write({ msg: { $case: "config", value: streamConfig() } });
    empty.write({ msg: undefined });
    empty.end();
    const e = await emptyDone;
    assert.equal(e.code, status.INVALID_ARGUMENT);
    assert.match(e.details, /neither config nor audio/);
  });

  const badConfigs: [string, Partial<StreamConfig>, RegExp][] = [
    ["no format", { format: undefined }, /config.format is required/],
    ["no sample rate", { format: { ...pcm16, sampleRate: 0 } }, /config.format.sample_rate is required/],
    ["4 kHz", { format: { ...pcm16, sampleRate: 4000 } }, /sample rate 4000 Hz is not supported \(8000..192000 Hz/],
    ["500 kHz", { format: { ...pcm16, sampleRate: 500000 } }, /sample rate 500000 Hz is not supported/],
    ["no encoding", { format: { ...pcm16, encoding: AudioEncoding.AUDIO_ENCODING_UNSPECIFIED } }, /config.format.encoding is required/],
    ["encoding 9", { format: { ...pcm16, encoding: 9 as AudioEncoding } }, /config.format.encoding 9 is unknown/],
    ["9 channels", { format: { ...pcm16, channels: 9 } }, /9 channels are not supported/],
    ["negative channels", { format: { ...pcm16, channels: -1 } }, /-1 channels are not supported/],
    ["unknown language", { language: "xx" }, /language 'xx' is not a language code whisper knows/],
    ["language name instead of code", { language: "english" }, /language 'english' is not a language code/],
    ["German on an English-only model", { language: "de" }, /needs a multilingual model; the loaded one is English-only/],
    ["translate on an English-only model", { translate: true }, /translate needs a multilingual model/],
    ["huge prompt", { initialPrompt: "x".repeat(5000) }, /initial_prompt is 5000 bytes \(at most 4096\)/],
    ["partial interval too short", { partialIntervalMs: 50 }, /partial_interval_ms must be 0 \(no partials\) or 100..60000 \(got 50\)/],
    ["negative partial interval", { partialIntervalMs: -1 }, /partial_interval_ms must be/],
    ["negative hangover", { vad: vad({ hangoverMs: -5 }) }, /config.vad.hangover_ms must be 50..10000 \(got -5; 0 = default 500\)/],
    ["threshold 100 dB", { vad: vad({ thresholdDb: 100 }) }, /config.vad.threshold_db must be 0..60 dB/],
    ["NaN threshold", { vad: vad({ thresholdDb: NaN }) }, /config.vad.threshold_db must be 0..60 dB/],
    ["50 s utterances", { vad: vad({ maxUtteranceMs: 50000 }) }, /config.vad.max_utterance_ms must be 1000..28000/],
    ["2 s pre-roll", { vad: vad({ preRollMs: 2000 }) }, /config.vad.pre_roll_ms must be 10..1000/],
    ["negative minimum speech", { vad: vad({ minSpeechMs: -1 }) }, /config.vad.min_speech_ms must be 10..10000/],
    ["hangover longer than half the longest utterance", { vad: vad({ hangoverMs: 3000, maxUtteranceMs: 5000 }) },
      /config.vad.hangover_ms \(3000\) must be at most half of config.vad.max_utterance_ms \(5000\)/],
    ["long request id", { requestId: "r".repeat(300) }, /config.request_id is longer than 256 bytes/],
  ];
  for (const [name, over, message] of badConfigs) {
    it(`Stream config, ${name}: INVALID_ARGUMENT`, () => streamFails(streamConfig(over), [quiet(0.1)], status.INVALID_ARGUMENT, message));
  }

  it("Stream audio: chunks of partial frames are refused", async () => {
    await streamFails(streamConfig(), [quiet(0.1), Buffer.alloc(3)], status.INVALID_ARGUMENT,
      /audio chunk of 3 bytes is not a whole number of 2-byte frames \(16-bit PCM, 1 channel\(s\)\)/);
    const f32stereo = streamConfig({ format: { sampleRate: 48000, encoding: AudioEncoding.AUDIO_ENCODING_FLOAT32LE, channels: 2 } });
    await streamFails(f32stereo, [Buffer.alloc(12)], status.INVALID_ARGUMENT, /12 bytes is not a whole number of 8-byte frames/);
  });

  it("Stream longer than --max-audio-s: OUT_OF_RANGE", async () => {
    await streamFails(streamConfig(), [quiet(1.5), quiet(1)], status.OUT_OF_RANGE,
      /the stream is longer than this engine's maximum of 2 s of audio \(--max-audio-s\)/);
    // Resampled audio counts at 16 kHz: 2.5 s at 8 kHz is too long as well.
    const slow = streamConfig({ format: { ...pcm16, sampleRate: 8000 } });
    await streamFails(slow, [Buffer.alloc(8000 * 2 * 2.5)], status.OUT_OF_RANGE, /maximum of 2 s/);
  });

  it("Transcribe: no audio, empty audio, raw PCM without its format or with partial frames", async () => {
    await rejects(transcribe({}), status.INVALID_ARGUMENT, /no audio: set wav \(a WAV file\) or pcm \(with format\)/);
    await rejects(transcribe({ audio: { $case: "pcm", value: quiet(0.5) } }), status.INVALID_ARGUMENT, /format is required with pcm/);
    await rejects(transcribe({ audio: { $case: "pcm", value: Buffer.alloc(3) }, format: pcm16 }), status.INVALID_ARGUMENT,
      /pcm holds 3 bytes, not a whole number of 2-byte frames/);
    await rejects(transcribe({ audio: { $case: "pcm", value: Buffer.alloc(0) }, format: pcm16 }), status.INVALID_ARGUMENT, /the audio holds no samples/);
    await rejects(transcribe({ audio: { $case: "wav", value: encodeWav(new Float32Array(0), { rate: RATE }) } }), status.INVALID_ARGUMENT,
      /the audio holds no samples/);
    await rejects(transcribe({ audio: { $case: "pcm", value: quiet(0.5) }, format: { ...pcm16, sampleRate: 1000 } }), status.INVALID_ARGUMENT,
      /format: sample rate 1000 Hz is not supported/);
  });

  it("Transcribe: files that are not usable WAV", async () => {
    await rejects(transcribe({ audio: { $case: "wav", value: Buffer.from("ID3\x03 this is an mp3, honest") } }), status.INVALID_ARGUMENT,
      /wav: not a WAV file \(no RIFF\/WAVE header\)/);
    const adpcm = encodeWav(new Float32Array(100), { rate: RATE });
    adpcm.writeUInt16LE(2, 20); // format tag 2: MS ADPCM
    await rejects(transcribe({ audio: { $case: "wav", value: adpcm } }), status.INVALID_ARGUMENT, /wav: WAV encoding 2 is not supported/);
    await rejects(transcribe({ audio: { $case: "wav", value: encodeWav(new Float32Array(100), { rate: 4000 }) } }), status.INVALID_ARGUMENT,
      /wav: WAV: sample rate 4000 Hz is not supported/);
    const truncated = encodeWav(new Float32Array(100), { rate: RATE }).subarray(0, 30);
    await rejects(transcribe({ audio: { $case: "wav", value: truncated } }), status.INVALID_ARGUMENT, /wav: WAV fmt chunk is truncated/);
  });

  it("Transcribe longer than --max-audio-s: OUT_OF_RANGE", async () => {
    await rejects(transcribe({ audio: { $case: "wav", value: encodeWav(new Float32Array(3 * 44100), { rate: 44100 }) } }), status.OUT_OF_RANGE,
      /the audio is 3 s long; this engine takes at most 2 s \(--max-audio-s\)/);
  });

  it("Transcribe: a bad language is refused before any decoding", async () => {
    await rejects(transcribe({ audio: { $case: "pcm", value: quiet(0.5) }, format: pcm16, language: "xx" }), status.INVALID_ARGUMENT,
      /language 'xx' is not a language code/);
  });

  it("after all that, the engine still transcribes, and counted every error", async () => {
    const res = await transcribe({ audio: { $case: "pcm", value: quiet(1) }, format: pcm16 });
    assert.equal(res.durationS, 1);
    const i = await info(client, md());
    assert.equal(i.ready, true);
    assert.ok(i.counters!.errors >= badConfigs.length + 20, `${i.counters!.errors} errors counted`);
  });
});
