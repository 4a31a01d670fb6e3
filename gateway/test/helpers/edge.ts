// Clients of the edge gRPC service for tests: device tokens, a Converse
// driver that records every event, a Chat call, the jfk.wav samples, and the
// transcription engine's own finals for the same audio (the reference a
// voice turn's stt_final events are compared with).
import { credentials, Metadata, status, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import {
  AssistantClient,
  type ChatEvent,
  type ChatRequest,
  type ConverseConfig,
  type ConverseIn,
  type ConverseOut,
  type Intent,
  type PipelineError,
  type ReplyEnd,
} from "@jota/control-plane/gen/jota/v1/assistant";
import type { TranscriptEvent } from "@jota/control-plane/gen/jota/v1/transcription";
import { jfkWav, pcm16Bytes, readPcm16Wav } from "../../../engines/tests/helpers/transcription";
import { converseSettings, engineStreamConfig } from "../../src/edge/settings";
import type { TestGateway } from "./gateway";

export type Out = NonNullable<ConverseOut["event"]>;

export function assistantClient(t: { grpcAddress: string }): AssistantClient {
  return new AssistantClient(t.grpcAddress, credentials.createInsecure());
}

export function auth(token: string | undefined): Metadata {
  const md = new Metadata();
  if (token !== undefined) md.set("authorization", `Bearer ${token}`);
  return md;
}

/** A device of the user with a token (the documented edge credential). */
export async function deviceToken(t: TestGateway, userId: string, name: string): Promise<{ deviceId: string; tokenId: string; token: string }> {
  const device = await t.stack.db.repos.devices.create(userId, { name });
  const { token, secret } = await t.stack.db.repos.devices.issueToken(userId, device.id);
  return { deviceId: device.id, tokenId: token.id, token: secret };
}

/** jfk.wav's samples as raw pcm16le bytes (16 kHz mono, 11 s of speech). */
export const jfkPcm = (): Buffer => Buffer.from(pcm16Bytes(readPcm16Wav(jfkWav())));

export function chunked(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}

export const PCM16_CONFIG: ConverseConfig = {
  deviceId: "",
  sampleRate: 16000,
  encoding: "pcm16le",
  channels: 1,
  language: "en",
  conversationId: "",
};

export interface Ended {
  code: status;
  details: string;
  metadata: Metadata | undefined;
}

/** A Converse call that records its events; every wait is a condition wait with a deadline. */
export class ConverseRun {
  readonly events: Out[] = [];
  readonly done: Promise<Ended>;
  private readonly listeners = new Set<() => void>();
  private ended: Ended | undefined;

  constructor(readonly call: ClientDuplexStream<ConverseIn, ConverseOut>) {
    this.done = new Promise((resolve) => {
      call.on("data", (m: ConverseOut) => {
        if (m.event) this.events.push(m.event);
        this.notify();
      });
      call.on("error", (e: ServiceError) => {
        this.ended ??= { code: e.code, details: e.details, metadata: e.metadata };
        this.notify();
        resolve(this.ended);
      });
      call.on("status", (s) => {
        this.ended ??= { code: s.code, details: s.details, metadata: s.metadata };
        this.notify();
        resolve(this.ended);
      });
    });
  }

  config(c: Partial<ConverseConfig> = {}): this {
    this.call.write({ msg: { $case: "config", value: { ...PCM16_CONFIG, ...c } } });
    return this;
  }

  /**
   * Writes the chunks as fast as the call takes them (grpc-js's buffer drained
   * between writes), or one every `paceMs` as a microphone would.
   */
  async audio(chunks: Buffer[], paceMs = 0): Promise<void> {
    for (const c of chunks) {
      if (this.ended) return;
      if (paceMs > 0) await new Promise((r) => setTimeout(r, paceMs));
      if (!this.call.write({ msg: { $case: "audio", value: c } })) await new Promise((r) => this.call.once("drain", r));
    }
  }

  endOfAudio(): this {
    this.call.write({ msg: { $case: "endOfAudio", value: true } });
    return this;
  }

  /** Half-close: no more audio. */
  end(): this {
    this.call.end();
    return this;
  }

  /** Resolves with the index of the first event from `from` on that matches. */
  waitFor(what: string, match: (e: Out, i: number) => boolean, from = 0, timeoutMs = 60_000): Promise<number> {
    return new Promise((resolve, reject) => {
      let next = from; // each event is tested once
      const check = () => {
        for (; next < this.events.length; next++)
          if (match(this.events[next]!, next)) {
            const i = next;
            cleanup();
            resolve(i);
            return;
          }
        if (this.ended) {
          cleanup();
          reject(new Error(`the call ended (${status[this.ended.code]}: ${this.ended.details}) before ${what}; events: ${summary(this.events)}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${what}; events: ${summary(this.events)}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  private notify() {
    for (const l of [...this.listeners]) l();
  }
}

export function converse(client: AssistantClient, md: Metadata): ConverseRun {
  return new ConverseRun(client.converse(md));
}

/** One Chat call to its end. */
export function chat(client: AssistantClient, md: Metadata, req: Partial<ChatRequest>): Promise<{ events: NonNullable<ChatEvent["event"]>[] } & Ended> {
  const call = client.chat({ deviceId: "", conversationId: "", text: "", ...req }, md);
  const events: NonNullable<ChatEvent["event"]>[] = [];
  return new Promise((resolve) => {
    let ended = false;
    call.on("data", (m: ChatEvent) => m.event && events.push(m.event));
    call.on("error", (e: ServiceError) => {
      if (!ended) resolve({ events, code: e.code, details: e.details, metadata: e.metadata });
      ended = true;
    });
    call.on("status", (s) => {
      if (!ended) resolve({ events, code: s.code, details: s.details, metadata: s.metadata });
      ended = true;
    });
  });
}

/** The events of one turn, as a device sees them. */
export interface SeenTurn {
  intent: Intent | undefined;
  deltas: string[];
  end: ReplyEnd | undefined;
  error: PipelineError | undefined;
}

/**
 * Splits the pipeline events into turns, checking the order the protocol
 * promises: a turn is [intent, reply_delta*] then reply_end, or an error
 * (with or without an intent before it), and the next turn starts only after.
 */
export function turnsOf(events: readonly (Out | NonNullable<ChatEvent["event"]>)[]): SeenTurn[] {
  const turns: SeenTurn[] = [];
  let cur: SeenTurn | undefined;
  for (const e of events) {
    switch (e.$case) {
      case "intent":
        if (cur) throw new Error(`intent ${e.value.requestId} before the previous turn ended`);
        cur = { intent: e.value, deltas: [], end: undefined, error: undefined };
        break;
      case "replyDelta":
        if (!cur) throw new Error("reply_delta outside a turn");
        cur.deltas.push(e.value.text);
        break;
      case "replyEnd":
        cur ??= { intent: undefined, deltas: [], end: undefined, error: undefined };
        if (cur.intent && cur.intent.requestId !== e.value.requestId) throw new Error("reply_end of another request than its intent");
        cur.end = e.value;
        turns.push(cur);
        cur = undefined;
        break;
      case "error":
        // An error with no request is a refusal or a transcription problem; it ends no turn.
        if (!e.value.requestId) break;
        cur ??= { intent: undefined, deltas: [], end: undefined, error: undefined };
        cur.error = e.value;
        turns.push(cur);
        cur = undefined;
        break;
    }
  }
  if (cur) turns.push(cur);
  return turns;
}

export const finalsOf = (events: readonly Out[]) => events.flatMap((e) => (e.$case === "sttFinal" ? [e.value] : []));

/**
 * What the transcription engine itself makes of the same audio, sent the
 * same way (one engine stream per list, half-closed at its end) with the
 * gateway's stream config: the final transcripts, in order, with their times
 * counted from the start of the first list (as the gateway counts them).
 */
export async function engineFinals(t: TestGateway, config: Partial<ConverseConfig>, streams: Buffer[][]): Promise<HeardFinal[]> {
  const settings = converseSettings({ ...PCM16_CONFIG, ...config });
  const finals: HeardFinal[] = [];
  let offsetS = 0;
  for (const chunks of streams) {
    const lease = t.stack.pool.pickTranscription();
    try {
      const call = lease.client.raw.stream();
      const events: TranscriptEvent[] = [];
      const finished = new Promise<void>((resolve, reject) => {
        call.on("data", (e: TranscriptEvent) => events.push(e));
        call.on("error", reject);
        call.on("end", () => resolve());
      });
      call.write({ msg: { $case: "config", value: engineStreamConfig(settings, "reference", 0) } });
      for (const c of chunks) if (!call.write({ msg: { $case: "audio", value: c } })) await new Promise((r) => call.once("drain", r));
      call.end();
      await finished;
      for (const e of events)
        if (e.event?.$case === "final") finals.push({ text: e.event.value.text, startS: offsetS + e.event.value.startS, endS: offsetS + e.event.value.endS });
      offsetS += chunks.reduce((n, c) => n + c.length, 0) / settings.bytesPerFrame / settings.sampleRate;
    } finally {
      lease.release();
    }
  }
  return finals;
}

export interface HeardFinal {
  text: string;
  startS: number;
  endS: number;
}

/** A final as compared with the engine's: its text and its place in the audio. */
export const heard = (f: HeardFinal): HeardFinal => ({ text: f.text, startS: round(f.startS), endS: round(f.endS) });
const round = (s: number) => Math.round(s * 1000) / 1000;

export function summary(events: readonly Out[]): string {
  return events
    .map((e) => {
      switch (e.$case) {
        case "sttPartial":
          return "partial";
        case "sttFinal":
          return `final(${JSON.stringify(e.value.text)})`;
        case "intent":
          return `intent(${e.value.requestId.slice(-4)})`;
        case "replyDelta":
          return "δ";
        case "replyEnd":
          return `end(${e.value.finishReason},${e.value.requestId.slice(-4)})`;
        case "error":
          return `error(${e.value.code})`;
        default:
          return e.$case;
      }
    })
    .join(" ")
    .replace(/(δ ?)+/g, "δ… ");
}

/** Row counts of what turns store: any change means something was stored. */
export async function stored(t: TestGateway): Promise<Record<string, number>> {
  const p = t.stack.db.prisma;
  const [conversations, messages, requests] = await Promise.all([p.conversation.count(), p.message.count(), p.request.count()]);
  return { conversations, messages, requests };
}

/** jota_grpc_calls_total for one method and status. */
export async function grpcCalls(t: TestGateway, method: string, code: keyof typeof status): Promise<number> {
  const { values } = await t.gw.ctx.metrics.grpcCalls.get();
  return values.find((v) => v.labels.method === method && v.labels.code === code)?.value ?? 0;
}

/** Polls `probe` until it holds (a condition wait, not a timing assertion). */
export async function until(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
