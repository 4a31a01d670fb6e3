// One model, several whisper states: streams decode side by side, more wait
// in a bounded queue, beyond it RESOURCE_EXHAUSTED; cancel frees a state at once.
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import type { TranscribeResponse, TranscriptionClient } from "../../control-plane/src/gen/jota/v1/transcription";
import type { EngineProcess } from "../../control-plane/src/index";
import { startEngine, unary } from "../../control-plane/test/helpers/engines";
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
const phrase = jfk.subarray(Math.round(0.3 * RATE), Math.round(2.0 * RATE));
const vadOn = streamConfig({ vad: { enabled: true, thresholdDb: 0, hangoverMs: 0, minSpeechMs: 0, maxUtteranceMs: 0, preRollMs: 0 } });

describe("transcription concurrency (--streams 2 --queue-max 1)", function () {
  this.timeout(180_000);
  let engine: EngineProcess;
  let client: TranscriptionClient;
  let reference: TranscribeResponse;

  const transcribe = (pcm: Int16Array) =>
    unary<TranscribeResponse>((cb) =>
      client.transcribe(
        { audio: { $case: "wav", value: pcm16Wav(pcm) }, format: undefined, language: "", translate: false, initialPrompt: "", requestId: "" },
        cb,
      ),
    );
  const idle = async () => {
    const i = await info(client);
    return i.streamsActive === 0 && i.queueLength === 0;
  };

  before(async () => {
    engine = await startEngine({
      kind: "transcription",
      args: ["--model", whisperModel(), "--threads", "1", "--streams", "2", "--queue-max", "1", "--no-fallback"],
    });
    client = sttClient(engine);
    reference = await transcribe(phrase);
    assert.ok(reference.segments.length > 0);
  });
  after(async () => {
    client?.close();
    await engine?.stop();
  });
  afterEach(async () => waitFor("the engine to be idle", idle));

  it("three streams at once on two slots (one queued) all get the same final as alone", async () => {
    const runs = [0, 1, 2].map(() => runStream(client, { config: streamConfig(), chunks: [pcm16Bytes(phrase)] }).done);
    const results = await Promise.all(runs);
    for (const r of results) {
      assert.equal(r.code, status.OK, r.details);
      const [final] = finals(r.events);
      assert.equal(final.text, reference.text);
      assert.deepEqual(final.segments, reference.segments);
    }
  });

  it("beyond the slots and the queue: RESOURCE_EXHAUSTED; Info shows the streams active and queued", async () => {
    const held = [0, 1].map(() => runStream(client, { config: vadOn, chunks: [], halfClose: false }));
    await waitFor("two active streams", async () => (await info(client)).streamsActive === 2);
    const queued = runStream(client, { config: vadOn, chunks: [], halfClose: false });
    await waitFor("one queued stream", async () => (await info(client)).queueLength === 1);

    const refused = await runStream(client, { config: vadOn, chunks: [] }).done;
    assert.equal(refused.code, status.RESOURCE_EXHAUSTED);
    assert.match(refused.details, /all 2 decoders are busy and 1 requests are already waiting/);
    await assert.rejects(transcribe(phrase), (e: { code: number }) => e.code === status.RESOURCE_EXHAUSTED);

    const i = await info(client);
    assert.equal(i.streamsMax, 2);
    assert.equal(i.queueMax, 1);
    for (const s of [...held, queued]) s.cancel();
    for (const s of [...held, queued]) assert.equal((await s.done).code, status.CANCELLED);
  });

  it("cancelling a stream hands its state to the next in line at once", async () => {
    const held = [0, 1].map(() => runStream(client, { config: vadOn, chunks: [], halfClose: false }));
    await waitFor("two active streams", async () => (await info(client)).streamsActive === 2);
    const waiting = runStream(client, { config: streamConfig(), chunks: [pcm16Bytes(phrase)] });
    await waitFor("one queued stream", async () => (await info(client)).queueLength === 1);

    // The held streams never end by themselves: only the cancel can let the
    // waiting one in.
    held[0].cancel();
    const r = await waiting.done;
    assert.equal(r.code, status.OK, r.details);
    assert.equal(finals(r.events)[0].text, reference.text);
    held[1].cancel();
    for (const h of held) assert.equal((await h.done).code, status.CANCELLED);
  });
});

describe("transcription cancellation (--streams 1)", function () {
  this.timeout(180_000);
  let engine: EngineProcess;
  let client: TranscriptionClient;

  before(async () => {
    engine = await startEngine({ kind: "transcription", args: ["--model", whisperModel(), "--threads", "2", "--streams", "1"] });
    client = sttClient(engine);
  });
  after(async () => {
    client?.close();
    await engine?.stop();
  });

  it("cancel stops a decode in progress instead of letting it finish", async () => {
    // Five minutes of speech: whisper decodes 30-second windows one after
    // another and checks for an abort after every encoder pass and decoder
    // step, so a cancel lands long before the end. Timed alone first.
    const long = new Int16Array(300 * RATE);
    for (let pos = 0; pos < long.length; pos += jfk.length) long.set(jfk.subarray(0, Math.min(jfk.length, long.length - pos)), pos);
    const request = { audio: { $case: "wav" as const, value: pcm16Wav(long) }, format: undefined, language: "", translate: false, initialPrompt: "", requestId: "" };
    const started = performance.now();
    await unary<TranscribeResponse>((cb) => client.transcribe(request, cb));
    const decodeMs = performance.now() - started;

    let done: (e: { code: number } | null) => void = () => {};
    const result = new Promise<{ code: number } | null>((r) => (done = r));
    const call = client.transcribe(request, (err) => done(err));
    // The request holds the only state from here on: it is decoding.
    await waitFor("the decode to start", async () => (await info(client)).streamsActive === 1);
    const cancelledAt = performance.now();
    call.cancel();
    assert.equal((await result)?.code, status.CANCELLED);
    await waitFor("the state to be freed", async () => (await info(client)).streamsActive === 0);
    const freedMs = performance.now() - cancelledAt;
    assert.ok(freedMs < decodeMs / 3, `freed ${freedMs.toFixed(0)} ms after the cancel; the decode takes ${decodeMs.toFixed(0)} ms`);
    await waitFor("the cancellation counted", async () => (await info(client)).counters!.cancellations === 1);
  });
});
