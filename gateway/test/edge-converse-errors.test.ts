// Bad input on Converse: every protocol error of a device ends the stream
// with a status that names the cause (UNAUTHENTICATED, PERMISSION_DENIED,
// INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE), before anything is stored; a
// running turn is aborted with what it had (recorded, nothing lost); and the
// server goes on serving.
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import type { AssistantClient, ConverseConfig, ConverseIn } from "@jota/control-plane/gen/jota/v1/assistant";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { assistantClient, auth, chunked, converse, deviceToken, finalsOf, grpcCalls, jfkPcm, stored, summary, turnsOf, until, type Ended } from "./helpers/edge";
import { jfkWav } from "../../engines/tests/helpers/transcription";
import fs from "node:fs";

describe("edge gRPC: Converse refusals", function () {
  this.timeout(240_000);
  let t: TestGateway;
  let client: AssistantClient;
  let alice: TestUser;
  let bob: TestUser;
  let token: string;
  before(async () => {
    t = await startTestGateway({ transcription: true });
    client = assistantClient(t);
    [alice, bob] = await Promise.all([t.user("alice"), t.user("bob")]);
    token = (await deviceToken(t, alice.userId, "satellite")).token;
  });
  after(async () => {
    client?.close();
    await t?.close();
  });

  /** Writes the messages, half-closes, and returns how the call ended. */
  async function send(md: ReturnType<typeof auth>, messages: ConverseIn["msg"][]): Promise<Ended & { events: number }> {
    const run = converse(client, md);
    for (const msg of messages) run.call.write({ msg });
    run.end();
    const ended = await run.done;
    return { ...ended, events: run.events.length };
  }
  const config = (c: Partial<ConverseConfig> = {}): ConverseIn["msg"] => ({
    $case: "config",
    value: { deviceId: "", sampleRate: 16000, encoding: "pcm16le", channels: 1, language: "en", conversationId: "", ...c },
  });
  const audio = (b: Buffer): ConverseIn["msg"] => ({ $case: "audio", value: b });
  const silence = Buffer.alloc(3200);
  /** jfk.wav's first 3 s: one utterance. */
  const clip = () => chunked(jfkPcm().subarray(0, 3 * 32000), 3200);

  it("refusals: the status, its message and Jota's code; nothing stored, no event sent", async () => {
    const revoked = await deviceToken(t, alice.userId, "revoked");
    await t.stack.db.repos.devices.revokeToken(alice.userId, revoked.tokenId);
    const chatOnly = await t.user("chat-only", ["chat"]);
    const bobs = await t.stack.db.repos.conversations.create(bob.userId, { title: "bob's" });
    const wav = fs.readFileSync(jfkWav()).subarray(0, 4000);
    const nan = Buffer.alloc(8);
    nan.writeFloatLE(0.5, 0);
    nan.writeFloatLE(NaN, 4);
    const before = await stored(t);
    const invalidBefore = await grpcCalls(t, "Converse", "INVALID_ARGUMENT");

    const cases: [string, ReturnType<typeof auth>, ConverseIn["msg"][], status, string, RegExp][] = [
      ["no token", auth(undefined), [config()], status.UNAUTHENTICATED, "unauthorized", /missing bearer credentials/],
      ["wrong token", auth("jota_d_wrong"), [config()], status.UNAUTHENTICATED, "unauthorized", /invalid, revoked or expired device token/],
      ["revoked token", auth(revoked.token), [config()], status.UNAUTHENTICATED, "unauthorized", /invalid, revoked or expired device token/],
      ["no audio scope", auth(chatOnly.key), [config()], status.PERMISSION_DENIED, "forbidden", /lacks the 'audio' scope/],
      ["audio before config", auth(token), [audio(silence)], status.INVALID_ARGUMENT, "validation_error", /^the first message must be config; audio comes after it$/],
      ["end_of_audio before config", auth(token), [{ $case: "endOfAudio", value: true }], status.INVALID_ARGUMENT, "validation_error", /^the first message must be config; end_of_audio/],
      ["an empty message", auth(token), [undefined], status.INVALID_ARGUMENT, "validation_error", /^a ConverseIn with none of config, audio, end_of_audio$/],
      ["no config at all", auth(token), [], status.INVALID_ARGUMENT, "validation_error", /^the stream ended before its config message$/],
      ["two configs", auth(token), [config(), config()], status.INVALID_ARGUMENT, "validation_error", /^config may only be sent once/],
      ["no sample rate", auth(token), [config({ sampleRate: 0 })], status.INVALID_ARGUMENT, "validation_error", /^config\.sample_rate is required/],
      ["a sample rate out of range", auth(token), [config({ sampleRate: 4000 })], status.INVALID_ARGUMENT, "validation_error", /^config\.sample_rate 4000 Hz is not supported \(8000\.\.192000/],
      ["no encoding", auth(token), [config({ encoding: "" })], status.INVALID_ARGUMENT, "validation_error", /^config\.encoding is required/],
      ["an unknown encoding", auth(token), [config({ encoding: "mp3" })], status.INVALID_ARGUMENT, "validation_error", /^config\.encoding "mp3" is unknown/],
      ["too many channels", auth(token), [config({ channels: 9 })], status.INVALID_ARGUMENT, "validation_error", /^config\.channels 9 is not supported \(1\.\.8/],
      ["a malformed language", auth(token), [config({ language: "English!" })], status.INVALID_ARGUMENT, "validation_error", /^config\.language "English!" is not a language code/],
      ["a language the engine does not know", auth(token), [config({ language: "xx" })], status.INVALID_ARGUMENT, "validation_error", /^the transcription engine refused the stream: config\.language 'xx'/],
      ["a device id too long", auth(token), [config({ deviceId: "d".repeat(129) })], status.INVALID_ARGUMENT, "validation_error", /^config\.device_id is 129 characters/],
      ["another user's conversation", auth(token), [config({ conversationId: bobs.id })], status.NOT_FOUND, "not_found", new RegExp(`conversation ${bobs.id} not found`)],
      ["a malformed conversation id", auth(token), [config({ conversationId: "kitchen" })], status.NOT_FOUND, "not_found", /conversation kitchen not found/],
      ["half a frame", auth(token), [config(), audio(Buffer.alloc(3))], status.INVALID_ARGUMENT, "validation_error", /^audio chunk of 3 bytes is not a whole number of 2-byte frames \(pcm16le, 1 channel\(s\)\)$/],
      ["half a stereo frame", auth(token), [config({ channels: 2 }), audio(Buffer.alloc(6))], status.INVALID_ARGUMENT, "validation_error", /^audio chunk of 6 bytes is not a whole number of 4-byte frames/],
      ["a WAV file as audio", auth(token), [config(), audio(wav)], status.INVALID_ARGUMENT, "validation_error", /^audio starts with a WAV header: send raw samples/],
      ["NaN samples", auth(token), [config({ encoding: "float32le" }), audio(nan)], status.INVALID_ARGUMENT, "validation_error", /^audio sample 1 of the chunk is NaN/],
      ["end_of_audio false", auth(token), [config(), { $case: "endOfAudio", value: false }], status.INVALID_ARGUMENT, "validation_error", /^end_of_audio must be true/],
    ];
    for (const [name, md, messages, code, jota, message] of cases) {
      const r = await send(md, messages);
      assert.equal(r.code, code, `${name}: ${status[r.code]} ${r.details}`);
      assert.match(r.details, message, name);
      assert.deepEqual(r.metadata?.get("jota-error-code"), [jota], name);
      assert.equal(r.events, 0, `${name}: no event before the refusal`);
    }
    assert.deepEqual(await stored(t), before);
    assert.equal(await grpcCalls(t, "Converse", "INVALID_ARGUMENT"), invalidBefore + cases.filter((c) => c[3] === status.INVALID_ARGUMENT).length);

    // The server goes on serving: a well-formed session right after.
    const ok = converse(client, auth(token)).config();
    await ok.audio(clip());
    ok.end();
    const ended = await ok.done;
    assert.equal(ended.code, status.OK, ended.details);
    assert.ok(finalsOf(ok.events).length > 0 && turnsOf(ok.events).length > 0, summary(ok.events));
  });

  it("a bad chunk mid-turn ends the stream; the running turn is recorded ABORTED with what it had", async () => {
    const run = converse(client, auth(token)).config();
    await run.audio(clip());
    run.endOfAudio();
    const delta = await run.waitFor("a reply_delta", (e) => e.$case === "replyDelta");
    const turn = turnsOf(run.events.slice(0, delta + 1)).at(-1)!;
    const conversationId = turn.intent!.conversationId;
    run.call.write({ msg: { $case: "audio", value: Buffer.alloc(5) } });
    const ended = await run.done;
    assert.equal(ended.code, status.INVALID_ARGUMENT);
    assert.match(ended.details, /^audio chunk of 5 bytes/);
    await until("the turns to end", async () => {
      const { items } = await t.stack.db.repos.requests.list(alice.userId, { conversationId });
      return items.every((r) => ["COMPLETED", "ABORTED", "FAILED"].includes(r.status));
    });
    const req = await t.stack.db.repos.requests.get(alice.userId, turn.intent!.requestId);
    assert.equal(req.status, "ABORTED");
    // What the device said and what was answered so far are kept.
    const msgs = await t.stack.db.repos.messages.ofRequest(alice.userId, req.id);
    assert.equal(msgs[0]!.role, "USER");
    assert.ok(msgs[0]!.content.length > 0);
    assert.ok(msgs[1]!.content.startsWith(turn.deltas.join("")));
  });

  it("a device token revoked during a long session: its next turn ends the stream UNAUTHENTICATED, storing nothing", async () => {
    const dev = await deviceToken(t, alice.userId, "hallway");
    const run = converse(client, auth(dev.token)).config();
    await run.audio(clip());
    run.endOfAudio();
    const end1 = await run.waitFor("the first turn's reply_end", (e) => e.$case === "replyEnd" && e.value.finishReason !== "cancelled");
    const conversationId = turnsOf(run.events).at(-1)!.intent!.conversationId;
    const requestsBefore = (await t.stack.db.repos.requests.list(alice.userId, { conversationId })).items.length;

    await t.stack.db.repos.devices.revokeToken(alice.userId, dev.tokenId);
    await run.audio(clip());
    run.endOfAudio();
    const ended = await run.done;
    assert.equal(ended.code, status.UNAUTHENTICATED, ended.details);
    assert.match(ended.details, /revoked/);
    assert.ok(!run.events.slice(end1 + 1).some((e) => e.$case === "intent"), `no turn began after the revocation: ${summary(run.events.slice(end1 + 1))}`);
    assert.equal((await t.stack.db.repos.requests.list(alice.userId, { conversationId })).items.length, requestsBefore, "no request stored for it");
  });

  const leases = () => t.stack.pool.transcription[0]!.inflight;
  /** Leases held on the transcription engine once they settle: a release comes at once, a leak stays for good. */
  async function leasesAfter(expected: number, settleMs = 1000): Promise<number> {
    const deadline = Date.now() + settleMs;
    while (leases() !== expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    return leases();
  }

  it("a call cancelled while its config is checked opens no engine stream", async () => {
    const conversation = await t.stack.db.repos.conversations.create(alice.userId, { title: "kitchen" });
    const before = leases();
    const repo = t.stack.db.repos.conversations;
    const get = repo.get;
    let asked = false;
    // The conversation check is the await during which the device cancels.
    repo.get = async (...args: Parameters<typeof get>) => {
      asked = true;
      await new Promise((r) => setTimeout(r, 500));
      return get.apply(repo, args);
    };
    try {
      const run = converse(client, auth(token)).config({ conversationId: conversation.id });
      await until("the conversation check", () => asked);
      await new Promise((r) => setTimeout(r, 100));
      run.call.cancel();
      assert.equal((await run.done).code, status.CANCELLED);
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(await leasesAfter(before), before, "no transcription engine lease is left held");
    } finally {
      repo.get = get;
    }
  });

  for (const how of ["a bad chunk", "a cancel"] as const)
    it(`${how} while an utterance is decoded and the next engine stream is open releases every engine lease`, async () => {
      const before = leases();
      const run = converse(client, auth(token)).config();
      // The whole of jfk.wav: its finals take the engine a while, and the next audio opens a second engine stream meanwhile.
      await run.audio(chunked(jfkPcm(), 3200));
      run.endOfAudio();
      await run.audio([silence]);
      if (how === "a bad chunk") run.call.write({ msg: { $case: "audio", value: Buffer.alloc(5) } });
      else {
        await until("the second engine stream", () => leases() === before + 2, 10_000);
        run.call.cancel();
      }
      const ended = await run.done;
      assert.equal(ended.code, how === "a bad chunk" ? status.INVALID_ARGUMENT : status.CANCELLED, ended.details);
      assert.equal(finalsOf(run.events).length, 0, `the call ended before the first final: ${summary(run.events)}`);
      assert.equal(await leasesAfter(before), before, "every engine lease was released");
    });

  it("without a transcription engine: UNAVAILABLE at config", async () => {
    const text = await startTestGateway();
    const c = assistantClient(text);
    try {
      const run = converse(c, auth(text.admin.key)).config();
      run.end();
      const ended = await run.done;
      assert.equal(ended.code, status.UNAVAILABLE);
      assert.match(ended.details, /no transcription engine is configured/);
      assert.deepEqual(ended.metadata?.get("jota-error-code"), ["engine_unavailable"]);
    } finally {
      c.close();
      await text.close();
    }
  });
});
