// With a real whisper model (JOTA_TEST_WHISPER_MODEL), jfk.wav says what
// JFK said; the generated test model only proves the plumbing.
import assert from "node:assert/strict";
import fs from "node:fs";
import { status } from "@grpc/grpc-js";
import type { TranscribeResponse, TranscriptionClient } from "../../control-plane/src/gen/jota/v1/transcription";
import type { EngineProcess } from "../../control-plane/src/index";
import { startEngine, unary } from "../../control-plane/test/helpers/engines";
import { finals, jfkWav, pcm16Bytes, readPcm16Wav, runStream, streamConfig, sttClient } from "./helpers/transcription";

const modelPath = process.env.JOTA_TEST_WHISPER_MODEL ?? "";
const words = (s: string) => s.toLowerCase().replace(/[^a-z ]+/g, " ").replace(/\s+/g, " ").trim();
const QUOTE = "ask not what your country can do for you";

describe("transcription with a real whisper model", function () {
  this.timeout(300_000);
  let engine: EngineProcess | undefined;
  let client: TranscriptionClient;

  before(async function () {
    if (!modelPath) {
      console.log("    skipped: set JOTA_TEST_WHISPER_MODEL to a whisper ggml .bin (e.g. models/real/ggml-base.en.bin) to run it");
      this.skip();
    }
    assert.ok(fs.existsSync(modelPath), `JOTA_TEST_WHISPER_MODEL=${modelPath} does not exist`);
    engine = await startEngine({ kind: "transcription", args: ["--model", modelPath, "--threads", "2"] });
    client = sttClient(engine);
  });
  after(async () => {
    client?.close();
    await engine?.stop();
  });

  it(`Transcribe(jfk.wav) contains "${QUOTE}"`, async () => {
    const res = await unary<TranscribeResponse>((cb) =>
      client.transcribe(
        { audio: { $case: "wav", value: fs.readFileSync(jfkWav()) }, format: undefined, language: "", translate: false, initialPrompt: "", requestId: "" },
        cb,
      ),
    );
    assert.ok(words(res.text).includes(QUOTE), res.text);
    assert.equal(res.language, "en");
  });

  it("Stream with the VAD finds the quote too", async () => {
    const r = await runStream(client, {
      config: streamConfig({ vad: { enabled: true, thresholdDb: 0, hangoverMs: 0, minSpeechMs: 0, maxUtteranceMs: 0, preRollMs: 0 } }),
      chunks: [pcm16Bytes(readPcm16Wav(jfkWav()))],
    }).done;
    assert.equal(r.code, status.OK, r.details);
    const text = finals(r.events).map((f) => f.text).join(" ");
    assert.ok(words(text).includes(QUOTE), text);
  });
});
