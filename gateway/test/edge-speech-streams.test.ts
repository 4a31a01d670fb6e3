// A device stream that lives for days opens one engine stream per utterance
// (each end_of_audio, each wake-up after an idle flush): SpeechInput must not
// keep them once read. Checked on a real SpeechInput over the gateway's pool
// and a real jota-transcription: after many utterances, only the streams
// not yet read to their end are held (its private list, read here because
// nothing else shows what a session retains).
import assert from "node:assert/strict";
import { silentLogger } from "@jota/control-plane";
import { converseSettings } from "../src/edge/settings";
import { SpeechInput } from "../src/edge/speech";
import { startTestGateway, type TestGateway } from "./helpers/gateway";
import { chunked, jfkPcm, PCM16_CONFIG, until } from "./helpers/edge";

describe("edge gRPC: a long voice session keeps no finished engine streams", function () {
  this.timeout(180_000);
  let t: TestGateway;
  before(async () => {
    t = await startTestGateway({ transcription: true });
  });
  after(() => t?.close());

  it("after six utterances, each on its own engine stream, at most the open one is held", async () => {
    const speech = new SpeechInput(t.stack.pool, converseSettings(PCM16_CONFIG), { requestId: "speech-streams", partialIntervalMs: 0, rotateAfterS: 30 }, silentLogger);
    const held = () => (speech as unknown as { streams: unknown[] }).streams.length;
    speech.start();
    const finals: number[] = [];
    const reading = (async () => {
      for await (const ev of speech.events()) if (ev.type === "final") finals.push(ev.utterance);
    })();
    const clip = chunked(jfkPcm().subarray(0, 2 * 16000 * 3), 3200); // one utterance (edge-barge-in checks it)
    for (let n = 1; n <= 6; n++) {
      for (const c of clip) await speech.write(c);
      speech.flush();
      await until(`utterance ${n}'s final`, () => finals.length >= n, 60_000);
    }
    await until("the last stream to be read to its end", () => held() === 0, 10_000);
    speech.end();
    await reading;
    assert.equal(finals.length, 6);
    assert.deepEqual([...finals].sort((a, b) => a - b), finals, "utterances numbered in order across engine streams");
    assert.equal(new Set(finals).size, 6, "each utterance its own number");
  });
});
