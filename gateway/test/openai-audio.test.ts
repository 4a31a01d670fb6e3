// POST /v1/audio/transcriptions through the official openai SDK: jfk.wav
// transcribed by the real transcription engine, in every response_format
// (json, text, verbose_json, srt, vtt), each the same transcript the engine
// gives when asked directly; files that are not audio, too large, or sent
// with fields OpenAI does not define are 400 / 413 naming the field.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import { Metadata } from "@grpc/grpc-js";
import OpenAI, { BadRequestError, toFile } from "openai";
import { TranscribeRequest, type TranscribeResponse } from "@jota/control-plane/gen/jota/v1/transcription";
import { jfkWav } from "../../engines/tests/helpers/transcription";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { engineModels, openaiClient, waitUntil } from "./helpers/openai";
import { Transcription, VerboseTranscription, timestamp } from "../src/openai/audio";

const MAX_AUDIO = 400_000;

/** "HH:MM:SS,mmm" or "HH:MM:SS.mmm" -> seconds. */
function seconds(ts: string): number {
  const m = /^(\d\d):(\d\d):(\d\d)[,.](\d\d\d)$/.exec(ts);
  assert.ok(m, `bad timestamp ${ts}`);
  return Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) + Number(m[4]) / 1000;
}

describe("openai /v1/audio/transcriptions", function () {
  this.timeout(300_000);
  let t: TestGateway;
  let u: TestUser;
  let client: OpenAI;
  let wav: Buffer;
  let direct: TranscribeResponse;
  before(async () => {
    t = await startTestGateway({ transcription: true, env: { JOTA_RATE_BURST: "1000", JOTA_MAX_AUDIO_BYTES: String(MAX_AUDIO) } });
    u = await t.user("listener");
    client = openaiClient(t, u.key);
    wav = fs.readFileSync(jfkWav());
    assert.ok(wav.length < MAX_AUDIO);
    const raw = t.stack.pool.transcription[0]!.client.raw;
    direct = await new Promise((resolve, reject) =>
      raw.transcribe(TranscribeRequest.fromPartial({ audio: { $case: "wav", value: wav } }), new Metadata(), (err, r) => (err ? reject(err) : resolve(r))),
    );
    assert.ok(direct.segments.length > 0, "the engine found no segment in jfk.wav");
  });
  after(async () => t?.close());

  const file = () => toFile(wav, "jfk.wav", { type: "audio/wav" });

  it("json (the default) and text carry the engine's transcript", async () => {
    const json = await client.audio.transcriptions.create({ model: "jota", file: await file() });
    assert.equal(json.text, direct.text.trim());
    assert.ok(json.text.length > 0);
    const text = await client.audio.transcriptions.create({ model: (await engineModels(t.stack)).transcription!, file: await file(), response_format: "text" });
    assert.equal(text, direct.text.trim());
  });

  it("verbose_json has the language, duration and every segment with its times", async () => {
    const v = await client.audio.transcriptions.create({ model: "jota", file: await file(), response_format: "verbose_json", timestamp_granularities: ["segment"] });
    assert.equal(v.language, direct.language);
    assert.ok(Math.abs(v.duration - 11) < 0.1, `duration ${v.duration}`);
    assert.equal(v.text, direct.text.trim());
    assert.deepEqual(
      v.segments!.map((s) => [s.id, s.start, s.end, s.text]),
      direct.segments.map((s, i) => [i, s.startS, s.endS, s.text]),
    );
  });

  it("the raw JSON answers are what the OpenAPI document describes", async () => {
    for (const [format, schema] of [["json", Transcription], ["verbose_json", VerboseTranscription]] as const) {
      const form = new FormData();
      form.set("model", "jota");
      form.set("response_format", format);
      form.set("file", new Blob([wav], { type: "audio/wav" }), "jfk.wav");
      const res = await fetch(`${t.url}/v1/audio/transcriptions`, { method: "POST", headers: { authorization: `Bearer ${u.key}` }, body: form });
      assert.equal(res.status, 200, format);
      assert.equal(schema.parse(await res.json()).text, direct.text.trim());
    }
  });

  it("srt and vtt are cue files of the engine's segments with correctly formatted times", async () => {
    const srt = (await client.audio.transcriptions.create({ model: "jota", file: await file(), response_format: "srt" })) as unknown as string;
    const cues = srt.trimEnd().split("\n\n");
    assert.equal(cues.length, direct.segments.length);
    cues.forEach((cue, i) => {
      const [n, times, ...text] = cue.split("\n");
      assert.equal(n, String(i + 1));
      const [a, b] = times!.split(" --> ");
      assert.ok(Math.abs(seconds(a!) - direct.segments[i]!.startS) < 0.0006);
      assert.ok(Math.abs(seconds(b!) - direct.segments[i]!.endS) < 0.0006);
      assert.match(a!, /,/);
      assert.equal(text.join("\n"), direct.segments[i]!.text.trim());
    });

    const vtt = (await client.audio.transcriptions.create({ model: "jota", file: await file(), response_format: "vtt" })) as unknown as string;
    assert.ok(vtt.startsWith("WEBVTT\n\n"));
    const vcues = vtt.slice("WEBVTT\n\n".length).trimEnd().split("\n\n");
    assert.equal(vcues.length, direct.segments.length);
    vcues.forEach((cue, i) => {
      const [times, ...text] = cue.split("\n");
      const [a, b] = times!.split(" --> ");
      assert.match(a!, /^\d\d:\d\d:\d\d\.\d\d\d$/);
      assert.ok(Math.abs(seconds(b!) - direct.segments[i]!.endS) < 0.0006);
      assert.equal(text.join("\n"), direct.segments[i]!.text.trim());
    });
  });

  it("timestamps carry hours, minutes, seconds and rounded milliseconds", () => {
    for (const [s, sep] of [[0, ","], [3661.5, ","], [59.9996, "."], [7322.0444, "."], [-1, ","]] as const) {
      const ts = timestamp(s, sep);
      assert.match(ts, sep === "," ? /^\d\d:\d\d:\d\d,\d\d\d$/ : /^\d\d:\d\d:\d\d\.\d\d\d$/);
      assert.equal(seconds(ts), Math.max(0, Math.round(s * 1000)) / 1000, `${s} -> ${ts}`);
    }
  });

  it("refuses files that are not audio, too large, or badly described, naming the field; the engine keeps serving", async () => {
    const before = await t.stack.pool.transcription[0]!.client.info();
    const form = (fields: Record<string, string | Blob>) => {
      const f = new FormData();
      for (const [k, v] of Object.entries(fields)) f.append(k, v, ...(v instanceof Blob ? ["upload.wav"] : []));
      return f;
    };
    const post = async (body: FormData | string, headers: Record<string, string> = {}) => {
      const res = await fetch(`${t.url}/v1/audio/transcriptions`, { method: "POST", headers: { authorization: `Bearer ${u.key}`, ...headers }, body });
      return { status: res.status, json: (await res.json()) as { error: { type: string; code: string; param: string | null; message: string } } };
    };
    const cases: [FormData, number, string | null, string][] = [
      [form({ model: "jota", file: new Blob([Buffer.from("this is plain text, not a WAV file")]) }), 400, "file", "invalid_value"],
      [form({ model: "jota", file: new Blob([wav.subarray(0, 44)]) }), 400, "file", "invalid_value"],
      [form({ model: "jota", file: new Blob([Buffer.alloc(MAX_AUDIO + 1000, 1)]) }), 413, "file", "payload_too_large"],
      [form({ model: "jota" }), 400, "file", "missing_required_parameter"],
      [form({ file: new Blob([wav]) }), 400, "model", "missing_required_parameter"],
      [form({ model: "jota", audio: new Blob([wav]) }), 400, "audio", "unknown_parameter"],
      [form({ model: "jota", file: new Blob([wav]), speed: "2" }), 400, "speed", "unknown_parameter"],
      [form({ model: "jota", file: new Blob([wav]), response_format: "mp3" }), 400, "response_format", "invalid_value"],
      [form({ model: "jota", file: new Blob([wav]), "timestamp_granularities[]": "word" }), 400, "timestamp_granularities", "unsupported_value"],
      [form({ model: "jota", file: new Blob([wav]), language: "xx" }), 400, "language", "invalid_value"],
      [form({ model: "whisper-9", file: new Blob([wav]) }), 404, "model", "model_not_found"],
    ];
    for (const [body, status, param, code] of cases) {
      const r = await post(body);
      assert.equal(r.status, status, JSON.stringify(r.json));
      assert.equal(r.json.error.param, param, JSON.stringify(r.json));
      assert.equal(r.json.error.code, code, JSON.stringify(r.json));
    }
    const json = await post(JSON.stringify({ model: "jota" }), { "content-type": "application/json" });
    assert.equal(json.status, 415);
    await assert.rejects(client.audio.transcriptions.create({ model: "jota", file: await toFile(Buffer.from("RIFF....WAVEjunk"), "x.wav") }), BadRequestError);

    const after = await t.stack.pool.transcription[0]!.client.info();
    assert.equal(after.counters!.files, before.counters!.files, "a refused file reached the decoder");
    const ok = await client.audio.transcriptions.create({ model: "jota", file: await file() });
    assert.equal(ok.text, direct.text.trim());
  });

  it("a client that leaves after its upload, before the engine is called, never has its file decoded", async () => {
    // The window between the parsed upload and the engine call is the model catalog's refresh, which asks
    // every engine for its models (at most every 5 s). With the inference engine paused, that refresh waits
    // for it, long enough for the client to leave inside the window every time.
    await new Promise((r) => setTimeout(r, 5200)); // the catalog is stale: the next call refreshes it
    const engine = t.stack.pool.transcription[0]!.client;
    const before = (await engine.info()).counters!;
    const boundary = "jota-test-boundary";
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\njota\r\n`),
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="jfk.wav"\r\nContent-Type: audio/wav\r\n\r\n`),
      wav,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const pid = t.inference.pid!;
    process.kill(pid, "SIGSTOP");
    try {
      await new Promise<void>((resolve) => {
        const req = http.request(`${t.url}/v1/audio/transcriptions`, {
          method: "POST",
          headers: { authorization: `Bearer ${u.key}`, "content-type": `multipart/form-data; boundary=${boundary}`, "content-length": String(body.length) },
        });
        req.on("error", () => resolve()); // the socket this test destroys
        req.on("response", (res) => assert.fail(`answered ${res.statusCode} while the catalog waited for the paused engine`));
        req.end(body, () => setTimeout(() => req.destroy(), 300));
      });
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      process.kill(pid, "SIGCONT");
    }
    // A call after it is decoded; the one left behind, had it been sent, would have started before it.
    const ok = await client.audio.transcriptions.create({ model: "jota", file: await file() });
    assert.equal(ok.text, direct.text.trim());
    const after = (await waitUntil(() => engine.info(), (i) => i.counters!.files > before.files + 1, 3000)).counters!;
    assert.equal(after.files - before.files, 1, "the file of the client that left was decoded");
  });
});
