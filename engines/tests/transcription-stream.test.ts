// Stream: audio in chunks of any size, half-close flushes a final that
// equals Transcribe of the same audio; partials come during an utterance.
import assert from "node:assert/strict";
import fs from "node:fs";
import { status } from "@grpc/grpc-js";
import {
  AudioEncoding,
  type TranscribeResponse,
  type TranscriptionClient,
} from "../../control-plane/src/gen/jota/v1/transcription";
import type { EngineProcess } from "../../control-plane/src/index";
import { startEngine, unary } from "../../control-plane/test/helpers/engines";
import {
  finals,
  info,
  jfkWav,
  partials,
  pcm16Bytes,
  prng,
  randomChunks,
  RATE,
  readPcm16Wav,
  runStream,
  streamConfig,
  sttClient,
  whisperModel,
} from "./helpers/transcription";

describe("transcription Stream", function () {
  this.timeout(240_000);
  let engine: EngineProcess;
  let client: TranscriptionClient;
  let reference: TranscribeResponse;
  const jfk = readPcm16Wav(jfkWav());

  before(async () => {
    engine = await startEngine({ kind: "transcription", args: ["--model", whisperModel(), "--threads", "2"] });
    client = sttClient(engine);
    reference = await unary<TranscribeResponse>((cb) =>
      client.transcribe(
        { audio: { $case: "wav", value: fs.readFileSync(jfkWav()) }, format: undefined, language: "", translate: false, initialPrompt: "", requestId: "" },
        cb,
      ),
    );
    assert.ok(reference.segments.length > 0);
  });
  after(async () => {
    client?.close();
    await engine?.stop();
  });

  it("VAD off, random chunk sizes, half-close: one final equal to Transcribe's", async () => {
    const seed = 20240611;
    const chunks = randomChunks(pcm16Bytes(jfk), 2, prng(seed));
    const r = await runStream(client, { config: streamConfig({ requestId: `stream-${seed}` }), chunks }).done;
    assert.equal(r.code, status.OK, r.details);
    assert.equal(r.events.length, 1, `only the final, no VAD events: ${JSON.stringify(r.events)}`);
    const [final] = finals(r.events);
    assert.equal(final.utterance, 0);
    assert.equal(final.text, reference.text);
    assert.deepEqual(final.segments, reference.segments);
    assert.equal(final.startS, 0);
    assert.equal(final.endS, jfk.length / RATE);
    assert.equal(final.language, "en");
    assert.ok(final.decodeMs > 0);
  });

  it("float32 samples give the same final as PCM16 (the same values)", async () => {
    const f32 = Buffer.alloc(jfk.length * 4);
    jfk.forEach((v, i) => f32.writeFloatLE(v / 32768, i * 4));
    const config = streamConfig({ format: { sampleRate: RATE, encoding: AudioEncoding.AUDIO_ENCODING_FLOAT32LE, channels: 1 } });
    const r = await runStream(client, { config, chunks: randomChunks(f32, 4, prng(7)) }).done;
    assert.equal(r.code, status.OK, r.details);
    assert.deepEqual(finals(r.events)[0].segments, reference.segments);
  });

  it("partials refresh the growing utterance at real-time pace and come before its final", async () => {
    const audio = pcm16Bytes(jfk.subarray(0, 4 * RATE));
    const chunks = randomChunks(audio, 2, prng(11), 1600);
    const r = await runStream(client, {
      config: streamConfig({ partialIntervalMs: 500 }),
      chunks,
      paceMs: (chunk) => chunk.length / 2 / (RATE / 1000), // as fast as a microphone
    }).done;
    assert.equal(r.code, status.OK, r.details);
    const kinds = r.events.map((e) => e.event?.$case);
    assert.equal(kinds.at(-1), "final");
    assert.ok(kinds.slice(0, -1).every((k) => k === "partial"), kinds.join(","));
    const ps = partials(r.events);
    assert.ok(ps.length >= 2, `${ps.length} partials in 4 s at a 500 ms interval`);
    for (const p of ps) {
      assert.equal(p.utterance, 0);
      assert.equal(p.startS, 0);
      assert.ok(p.endS > 0 && p.endS <= 4);
    }
    const ends = ps.map((p) => p.endS);
    assert.deepEqual(ends, [...ends].sort((a, b) => a - b), "each covers more audio than the last");
  });

  it("when decoding cannot keep up, due partials are skipped, not queued", async () => {
    const before = (await info(client)).counters!;
    // 11 s of audio at once, far faster than real time: about 20 partials
    // fall due while the decoder is busy with the first (or with the final).
    const chunks = randomChunks(pcm16Bytes(jfk), 2, prng(3), 1600);
    const r = await runStream(client, { config: streamConfig({ partialIntervalMs: 500 }), chunks }).done;
    assert.equal(r.code, status.OK, r.details);
    const after = (await info(client)).counters!;
    const delivered = partials(r.events).length;
    assert.ok(delivered <= 1, `${delivered} partials delivered: due ones were queued`);
    assert.equal(after.partials - before.partials, delivered);
    assert.ok(after.partialsSkipped - before.partialsSkipped >= 15, `${after.partialsSkipped - before.partialsSkipped} skipped`);
    assert.equal(finals(r.events).length, 1);
  });

  it("a stream with no audio ends with no event", async () => {
    const r = await runStream(client, { config: streamConfig(), chunks: [] }).done;
    assert.equal(r.code, status.OK, r.details);
    assert.deepEqual(r.events, []);
  });
});
