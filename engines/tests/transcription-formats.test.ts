// Transcribe takes WAV files of every common PCM format and raw PCM: the
// same sample values give the same transcript, other rates are resampled.
import assert from "node:assert/strict";
import {
  AudioEncoding,
  type TranscribeRequest,
  type TranscribeResponse,
  type TranscriptionClient,
} from "../../control-plane/src/gen/jota/v1/transcription";
import type { EngineProcess } from "../../control-plane/src/index";
import { startEngine, unary } from "../../control-plane/test/helpers/engines";
import { encodeWav, exactWav, jfkWav, pcm16Bytes, RATE, readPcm16Wav, sttClient, whisperModel } from "./helpers/transcription";

describe("transcription input formats", function () {
  this.timeout(180_000);
  let engine: EngineProcess;
  let client: TranscriptionClient;
  let reference: TranscribeResponse;
  const jfk = readPcm16Wav(jfkWav());

  const transcribe = (audio: TranscribeRequest["audio"], format?: TranscribeRequest["format"]) =>
    unary<TranscribeResponse>((cb) =>
      client.transcribe({ audio, format, language: "", translate: false, initialPrompt: "", requestId: "" }, cb),
    );

  before(async () => {
    engine = await startEngine({ kind: "transcription", args: ["--model", whisperModel(), "--threads", "2", "--no-fallback"] });
    client = sttClient(engine);
    reference = await transcribe({ $case: "wav", value: exactWav(jfk, "s16") });
    assert.ok(reference.segments.length > 0);
    assert.equal(reference.durationS, 11);
  });
  after(async () => {
    client?.close();
    await engine?.stop();
  });

  it("raw PCM16 with its format equals the WAV", async () => {
    const res = await transcribe({ $case: "pcm", value: pcm16Bytes(jfk) }, { sampleRate: RATE, encoding: AudioEncoding.AUDIO_ENCODING_PCM16LE, channels: 1 });
    assert.deepEqual(res.segments, reference.segments);
  });

  for (const [format, channels] of [["s24", 1], ["s32", 1], ["f32", 1], ["s16", 2], ["f32", 2]] as const) {
    it(`a ${channels}-channel ${format} WAV of the same values equals the 16-bit mono one`, async () => {
      const res = await transcribe({ $case: "wav", value: exactWav(jfk, format, channels) });
      assert.deepEqual(res.segments, reference.segments);
      assert.equal(res.durationS, 11);
    });
  }

  it("raw float32 stereo with its format equals the WAV", async () => {
    const wav = exactWav(jfk, "f32", 2);
    const res = await transcribe({ $case: "pcm", value: wav.subarray(44) }, { sampleRate: RATE, encoding: AudioEncoding.AUDIO_ENCODING_FLOAT32LE, channels: 2 });
    assert.deepEqual(res.segments, reference.segments);
  });

  for (const rate of [8000, 22050, 44100, 48000]) {
    it(`${rate} Hz is resampled to 16 kHz (8-bit and 16-bit)`, async () => {
      // A tone burst: any rate, any width, the engine hears 16 kHz of it.
      const seconds = 2;
      const samples = Float32Array.from({ length: seconds * rate }, (_, i) => 0.3 * Math.sin((2 * Math.PI * 440 * i) / rate));
      for (const format of ["u8", "s16"] as const) {
        const res = await transcribe({ $case: "wav", value: encodeWav(samples, { rate, format }) });
        assert.equal(res.durationS, seconds);
      }
    });
  }
});
