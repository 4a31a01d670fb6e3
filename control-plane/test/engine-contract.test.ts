// The contracts generated on both sides (C++ by protoc, TypeScript by
// ts-proto) talk to each other: a real engine, real gRPC on 127.0.0.1.
import assert from "node:assert/strict";
import { credentials, status } from "@grpc/grpc-js";
import { InferenceClient, type InferenceInfo } from "../src/gen/jota/v1/inference";
import { TranscriptionClient, type TranscriptionInfo } from "../src/gen/jota/v1/transcription";
import { bearer, startEngine, unary } from "./helpers/engines";
import type { EngineProcess } from "../src/index";

describe("engine contracts (C++ server, ts-proto client)", function () {
  this.timeout(120_000);
  const token = "test-token-" + Math.random().toString(36).slice(2);
  let inference: EngineProcess;
  let transcription: EngineProcess;
  let infer: InferenceClient;
  let stt: TranscriptionClient;

  before(async () => {
    [inference, transcription] = await Promise.all([
      startEngine({ kind: "inference", token }),
      startEngine({ kind: "transcription", token }),
    ]);
    infer = new InferenceClient(inference.address!, credentials.createInsecure());
    stt = new TranscriptionClient(transcription.address!, credentials.createInsecure());
  });
  after(async () => {
    infer?.close();
    stt?.close();
    await Promise.all([inference?.stop(), transcription?.stop()]);
  });

  it("Inference.Info describes the loaded chat model", async () => {
    const info = await unary<InferenceInfo>((cb) => infer.info({}, bearer(token), cb));
    assert.equal(info.ready, true);
    assert.equal(info.chatModel?.architecture, "qwen2");
    assert.equal(info.chatModel?.hasChatTemplate, true);
    assert.ok((info.chatModel?.parameters ?? 0) > 0);
    assert.ok((info.chatModel?.vocabSize ?? 0) > 150_000, "qwen2 tokenizer has ~151k tokens");
    assert.equal(info.chatModel?.contextSize, 1024);
    assert.equal(info.slotsTotal, 2);
    assert.equal(info.threads, 2);
    assert.equal(info.build?.engine, "llama.cpp");
    assert.match(info.build?.engineCommit ?? "", /de3ff81/);
    assert.equal(info.embeddingModel, undefined);
  });

  it("Transcription.Info describes the loaded whisper model", async () => {
    const info = await unary<TranscriptionInfo>((cb) => stt.info({}, bearer(token), cb));
    assert.equal(info.ready, true);
    assert.equal(info.modelType, "tiny");
    assert.equal(info.multilingual, false);
    assert.deepEqual(info.languages, ["en"]);
    assert.equal(info.build?.engine, "whisper.cpp");
  });

  it("calls without the bearer token are UNAUTHENTICATED", async () => {
    await assert.rejects(
      unary((cb) => infer.info({}, cb)),
      (e: { code: number; details: string }) => e.code === status.UNAUTHENTICATED && /missing/.test(e.details),
    );
    await assert.rejects(
      unary((cb) => stt.info({}, bearer("wrong"), cb)),
      (e: { code: number; details: string }) => e.code === status.UNAUTHENTICATED && /invalid engine token/.test(e.details),
    );
  });
});
