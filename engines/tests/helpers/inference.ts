// Helpers for gRPC-level tests of jota-inference.
import { credentials, type ClientReadableStream, type Metadata } from "@grpc/grpc-js";
import {
  InferenceClient,
  type GenerateEvent,
  GenerateRequest,
  type GenerateDone,
  type GenerateStarted,
  type InferenceInfo,
} from "../../../control-plane/src/gen/jota/v1/inference";
import type { EngineProcess } from "../../../control-plane/src/index";
import { startEngine, testModel, unary, requireFile } from "../../../control-plane/test/helpers/engines";

export { startEngine, testModel, unary, requireFile };

export interface Collected {
  started: GenerateStarted;
  text: string;
  ids: number[];
  deltas: { text: string; ids: number[]; index: number }[];
  done: GenerateDone;
}

export const request = (partial: Partial<GenerateRequest>): GenerateRequest => GenerateRequest.fromPartial(partial);

export const prompt = (text: string, extra: Partial<GenerateRequest> = {}) =>
  request({ input: { $case: "prompt", value: text }, ...extra });
export const tokens = (ids: number[], extra: Partial<GenerateRequest> = {}) =>
  request({ input: { $case: "promptTokens", value: { ids } }, ...extra });
export const chat = (items: { role: string; content: string }[], extra: Partial<GenerateRequest> = {}) =>
  request({ input: { $case: "messages", value: { items } }, ...extra });

/** Reads a whole Generate stream and checks its shape: started, deltas in order, one done. */
export async function collect(call: ClientReadableStream<GenerateEvent>): Promise<Collected> {
  let started: GenerateStarted | undefined;
  let done: GenerateDone | undefined;
  const deltas: Collected["deltas"] = [];
  for await (const ev of call as AsyncIterable<GenerateEvent>) {
    const e = ev.event;
    if (!e) throw new Error("empty event");
    if (done) throw new Error("event after done");
    if (e.$case === "started") {
      if (started || deltas.length) throw new Error("started is not first or repeated");
      started = e.value;
    } else if (e.$case === "delta") {
      if (!started) throw new Error("delta before started");
      deltas.push({ text: e.value.text, ids: e.value.tokenIds, index: e.value.index });
    } else {
      done = e.value;
    }
  }
  if (!started || !done) throw new Error(`stream ended without ${started ? "done" : "started"}`);
  let next = 0;
  for (const d of deltas) {
    if (d.index !== next) throw new Error(`delta index ${d.index}, expected ${next}`);
    next += d.ids.length;
  }
  return {
    started,
    done,
    deltas,
    text: deltas.map((d) => d.text).join(""),
    ids: deltas.flatMap((d) => d.ids),
  };
}

export class InferenceHarness {
  constructor(
    readonly engine: EngineProcess,
    readonly client: InferenceClient,
  ) {}
  static async start(args?: string[], token?: string): Promise<InferenceHarness> {
    const engine = await startEngine({ kind: "inference", args, token });
    return new InferenceHarness(engine, new InferenceClient(engine.address!, credentials.createInsecure()));
  }
  generate(req: GenerateRequest, md?: Metadata): Promise<Collected> {
    return collect(md ? this.client.generate(req, md) : this.client.generate(req));
  }
  info(md?: Metadata): Promise<InferenceInfo> {
    return unary((cb) => (md ? this.client.info({}, md, cb) : this.client.info({}, cb)));
  }
  async stop() {
    this.client.close();
    await this.engine.stop();
  }
}

/** The default test engine: tiny chat model, 2 threads, 4 slots of 1024 tokens. */
export const tinyChatArgs = (extra: string[] = []) => [
  "--model",
  requireFile(testModel("tiny-chat.gguf")),
  "--threads",
  "2",
  "--slots",
  "4",
  "--ctx-size",
  "1024",
  ...extra,
];
