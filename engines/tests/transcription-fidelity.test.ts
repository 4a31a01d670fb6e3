// Transcribe gives exactly what whisper.cpp's own whisper-cli gives: same
// model, same audio, same greedy parameters, same text and segment times.
import assert from "node:assert/strict";
import fs from "node:fs";
import type { TranscribeResponse, TranscriptionClient } from "../../control-plane/src/gen/jota/v1/transcription";
import type { EngineProcess } from "../../control-plane/src/index";
import { startEngine, unary } from "../../control-plane/test/helpers/engines";
import { type CliSegment, jfkWav, sttClient, whisperCli, whisperModel } from "./helpers/transcription";

const asCli = (res: TranscribeResponse): CliSegment[] =>
  res.segments.map((s) => ({ from: Math.round(s.startS * 1000), to: Math.round(s.endS * 1000), text: s.text }));

function transcribeWav(client: TranscriptionClient, wav: Buffer) {
  return unary<TranscribeResponse>((cb) =>
    client.transcribe({ audio: { $case: "wav", value: wav }, format: undefined, language: "", translate: false, initialPrompt: "", requestId: "fidelity" }, cb),
  );
}

for (const variant of [
  { name: "whisper-cli's defaults (temperature fallback on)", engineArgs: [], cliArgs: [] },
  { name: "temperature fallback off (--no-fallback == whisper-cli -nf)", engineArgs: ["--no-fallback"], cliArgs: ["-nf"] },
]) {
  describe(`transcription fidelity: ${variant.name}`, function () {
    this.timeout(240_000);
    let engine: EngineProcess;
    let client: TranscriptionClient;

    before(async () => {
      engine = await startEngine({ kind: "transcription", args: ["--model", whisperModel(), "--threads", "2", ...variant.engineArgs] });
      client = sttClient(engine);
    });
    after(async () => {
      client?.close();
      await engine?.stop();
    });

    it("Transcribe(jfk.wav) has whisper-cli's segments: text and times", async () => {
      // One after the other: both use both cores.
      const cli = await whisperCli(jfkWav(), ["-t", "2", "-bs", "1", ...variant.cliArgs]);
      const res = await transcribeWav(client, fs.readFileSync(jfkWav()));
      assert.ok(cli.segments.length > 0, "whisper-cli found no segment: the comparison would prove nothing");
      assert.deepEqual(asCli(res), cli.segments);
      assert.equal(res.text, cli.segments.map((s) => s.text).join("").trim());
      assert.equal(res.language, "en");
      assert.equal(res.durationS, 11);
    });
  });
}
