// The engine's VAD on real speech: silence + speech + silence + speech, built
// from jfk.wav, gives exactly two utterances at the right times, each with
// its final.
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import type { TranscriptionClient } from "../../control-plane/src/gen/jota/v1/transcription";
import type { EngineProcess } from "../../control-plane/src/index";
import { startEngine } from "../../control-plane/test/helpers/engines";
import {
  finals,
  jfkWav,
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

const jfk = readPcm16Wav(jfkWav());
const cut = (from: number, to: number) => jfk.subarray(Math.round(from * RATE), Math.round(to * RATE));
// Two phrases, cut where the voice starts and stops ("And so my fellow
// Americans", "ask not"), and a second of the room between phrases.
const phraseA = cut(0.32, 1.98);
const phraseB = cut(3.28, 4.29);
const room = cut(2.2, 3.2);

function silence(seconds: number, background: "digital" | "room"): Int16Array {
  const out = new Int16Array(Math.round(seconds * RATE));
  if (background === "room") for (let i = 0; i < out.length; i++) out[i] = room[i % room.length];
  return out;
}

/** 1 s silence, phrase A, 1.5 s silence, phrase B, 1 s silence; and where the speech truly is. */
function scene(background: "digital" | "room") {
  const parts = [silence(1, background), phraseA, silence(1.5, background), phraseB, silence(1, background)];
  const audio = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  const starts: number[] = [];
  for (const p of parts) {
    starts.push(pos / RATE);
    audio.set(p, pos);
    pos += p.length;
  }
  const truth = [
    [starts[1], starts[2]],
    [starts[3], starts[4]],
  ];
  return { audio, truth };
}

describe("transcription VAD (energy detector, real speech)", function () {
  this.timeout(120_000);
  let engine: EngineProcess;
  let client: TranscriptionClient;

  before(async () => {
    engine = await startEngine({ kind: "transcription", args: ["--model", whisperModel(), "--threads", "2", "--no-fallback"] });
    client = sttClient(engine);
  });
  after(async () => {
    client?.close();
    await engine?.stop();
  });

  for (const background of ["digital", "room"] as const) {
    it(`two phrases between ${background} silences: two speech_started/speech_ended pairs within 100 ms of the truth`, async () => {
      const { audio, truth } = scene(background);
      const r = await runStream(client, {
        config: streamConfig({ vad: { enabled: true, thresholdDb: 0, hangoverMs: 0, minSpeechMs: 0, maxUtteranceMs: 0, preRollMs: 0 } }),
        chunks: randomChunks(pcm16Bytes(audio), 2, prng(5), 2000),
      }).done;
      assert.equal(r.code, status.OK, r.details);

      const vad = r.events.flatMap((e) =>
        e.event?.$case === "speechStarted" || e.event?.$case === "speechEnded" ? [{ kind: e.event.$case, ...e.event.value }] : [],
      );
      assert.deepEqual(
        vad.map((e) => `${e.kind} ${e.utterance}`),
        ["speechStarted 0", "speechEnded 0", "speechStarted 1", "speechEnded 1"],
        JSON.stringify(vad),
      );
      for (let u = 0; u < 2; u++) {
        const [start, end] = [vad[2 * u].atS, vad[2 * u + 1].atS];
        assert.ok(Math.abs(start - truth[u][0]) <= 0.1, `utterance ${u} starts at ${start}, truth ${truth[u][0]}`);
        assert.ok(Math.abs(end - truth[u][1]) <= 0.1, `utterance ${u} ends at ${end}, truth ${truth[u][1]}`);
      }

      const fs = finals(r.events);
      assert.deepEqual(fs.map((f) => f.utterance), [0, 1]);
      for (const f of fs) {
        assert.equal(f.startS, vad[2 * f.utterance].atS);
        assert.equal(f.endS, vad[2 * f.utterance + 1].atS);
        assert.ok(f.segments.length > 0, "the utterance was decoded");
        for (const s of f.segments) assert.ok(s.startS >= f.startS - 0.3 - 1e-9, "segment times are stream times");
      }
      // Every final comes after the speech_ended of its utterance.
      const index = (pred: (e: (typeof r.events)[number]) => boolean) => r.events.findIndex(pred);
      for (let u = 0; u < 2; u++) {
        const ended = index((e) => e.event?.$case === "speechEnded" && e.event.value.utterance === u);
        const final = index((e) => e.event?.$case === "final" && e.event.value.utterance === u);
        assert.ok(ended < final);
      }
    });
  }

  it("silence alone gives no event at all", async () => {
    const r = await runStream(client, {
      config: streamConfig({ vad: { enabled: true, thresholdDb: 0, hangoverMs: 0, minSpeechMs: 0, maxUtteranceMs: 0, preRollMs: 0 } }),
      chunks: [pcm16Bytes(silence(3, "room"))],
    }).done;
    assert.equal(r.code, status.OK, r.details);
    assert.deepEqual(r.events, []);
  });
});
