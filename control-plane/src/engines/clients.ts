// Typed clients of one engine endpoint, over the ts-proto stubs: one gRPC
// channel per endpoint shared by all its services; the bearer token on every
// call (an interceptor, so no call can forget it); a deadline on every unary
// call; Generate as an async iterable that an AbortSignal cancels; errors as
// EngineCallError, which says which engine, which call and what kind of
// failure.
import {
  Channel,
  InterceptingCall,
  Metadata,
  credentials,
  status,
  type ClientOptions,
  type ClientUnaryCall,
  type Interceptor,
  type ServiceError,
} from "@grpc/grpc-js";
import { HealthClient } from "../gen/grpc/health/v1/health";
import {
  InferenceClient,
  type CountTokensRequest,
  type CountTokensResponse,
  type DetokenizeRequest,
  type DetokenizeResponse,
  type EmbedRequest,
  type EmbedResponse,
  type GenerateEvent,
  type GenerateRequest,
  type InferenceInfo,
  type TokenizeRequest,
  type TokenizeResponse,
} from "../gen/jota/v1/inference";
import { TranscriptionClient, type TranscriptionInfo } from "../gen/jota/v1/transcription";

export type EngineKind = "inference" | "transcription";

/** What went wrong, in the terms a caller acts on. */
export type EngineFailure =
  | "unavailable" // the engine is gone or unreachable: try another one
  | "deadline" // no answer in time
  | "cancelled" // the caller aborted
  | "unauthenticated" // wrong or missing JOTA_ENGINE_TOKEN
  | "unimplemented"
  | "invalid" // the engine refused the request itself (INVALID_ARGUMENT): no other engine would take it either
  | "busy" // every slot busy and the wait queue full (RESOURCE_EXHAUSTED): another engine may have room
  | "stalled" // the call went silent (GenerateOptions.stallMs): cancelled, the engine is stuck or gone
  | "failed"; // the engine answered with an error

export class EngineCallError extends Error {
  constructor(
    readonly address: string,
    readonly method: string,
    readonly code: status,
    readonly failure: EngineFailure,
    details: string,
  ) {
    super(`${method} on engine ${address}: ${status[code] ?? code}${details ? `: ${details}` : ""}`);
    this.name = "EngineCallError";
  }
}

const FAILURES: Partial<Record<status, EngineFailure>> = {
  [status.UNAVAILABLE]: "unavailable",
  [status.DEADLINE_EXCEEDED]: "deadline",
  [status.CANCELLED]: "cancelled",
  [status.UNAUTHENTICATED]: "unauthenticated",
  [status.UNIMPLEMENTED]: "unimplemented",
  [status.INVALID_ARGUMENT]: "invalid",
  [status.RESOURCE_EXHAUSTED]: "busy",
};

export function toEngineError(err: unknown, address: string, method: string): EngineCallError {
  if (err instanceof EngineCallError) return err;
  const e = err as Partial<ServiceError>;
  const code = typeof e.code === "number" ? e.code : status.UNKNOWN;
  return new EngineCallError(address, method, code, FAILURES[code] ?? "failed", e.details ?? e.message ?? String(err));
}

function bearer(token: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

export interface ChannelSettings {
  /** Bearer token for the engines; empty sends none. */
  token: string;
  /** The channel's own reconnect backoff, kept in step with the pool's. */
  reconnectInitialMs: number;
  reconnectMaxMs: number;
}

/** One channel to `address` and the client options that route every stub through it. */
export function openChannel(address: string, s: ChannelSettings): { channel: Channel; options: ClientOptions } {
  const channel = new Channel(address, credentials.createInsecure(), {
    "grpc.initial_reconnect_backoff_ms": s.reconnectInitialMs,
    "grpc.max_reconnect_backoff_ms": s.reconnectMaxMs,
    // An engine host that vanishes without closing the connection (power,
    // network) is noticed within ~40 s: its calls fail UNAVAILABLE instead of
    // waiting for TCP to give up (~15 min). The engines accept pings 5 s
    // apart (engines/common/runtime.cpp).
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
    // Generate requests carry whole conversations.
    "grpc.max_send_message_length": 64 << 20,
    "grpc.max_receive_message_length": 64 << 20,
  });
  return { channel, options: { channelOverride: channel, interceptors: s.token ? [bearer(s.token)] : [] } };
}

type UnaryMethod<Req, Res> = (
  req: Req,
  md: Metadata,
  opts: { deadline: number },
  cb: (err: ServiceError | null, res: Res) => void,
) => ClientUnaryCall;

function unary<Req, Res>(address: string, name: string, method: UnaryMethod<Req, Res>, req: Req, timeoutMs: number): Promise<Res> {
  return new Promise((resolve, reject) => {
    method(req, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
      err ? reject(toEngineError(err, address, name)) : resolve(res),
    );
  });
}

export interface GenerateOptions {
  /** Aborting cancels the call; the engine stops decoding before its next token. */
  signal?: AbortSignal;
  /** Overall limit of the stream; none by default (a turn is bounded by max_tokens and abort). */
  deadlineMs?: number;
  /**
   * Longest silence allowed once the engine has started the request (its
   * `started` event: before it, the request may wait in the engine's queue
   * for as long as the slots ahead of it take). Past it the call is
   * cancelled and fails as "stalled": an engine stuck in a decode, or a
   * connection that stays open to a dead peer, no longer holds the turn (and
   * its conversation) forever. 0 or unset: no limit.
   */
  stallMs?: number;
}

export class InferenceEngineClient {
  readonly raw: InferenceClient;

  constructor(
    readonly address: string,
    options: ClientOptions,
    private readonly timeoutMs: number,
  ) {
    this.raw = new InferenceClient(address, credentials.createInsecure(), options);
  }

  info(): Promise<InferenceInfo> {
    return unary(this.address, "Info", this.raw.info.bind(this.raw), {}, this.timeoutMs);
  }
  countTokens(req: CountTokensRequest): Promise<CountTokensResponse> {
    return unary(this.address, "CountTokens", this.raw.countTokens.bind(this.raw), req, this.timeoutMs);
  }
  tokenize(req: TokenizeRequest): Promise<TokenizeResponse> {
    return unary(this.address, "Tokenize", this.raw.tokenize.bind(this.raw), req, this.timeoutMs);
  }
  detokenize(req: DetokenizeRequest): Promise<DetokenizeResponse> {
    return unary(this.address, "Detokenize", this.raw.detokenize.bind(this.raw), req, this.timeoutMs);
  }
  /** Embedding a batch takes longer than a lookup: its own deadline. */
  embed(req: EmbedRequest, timeoutMs = 60_000): Promise<EmbedResponse> {
    return unary(this.address, "Embed", this.raw.embed.bind(this.raw), req, timeoutMs);
  }

  /**
   * Streams one generation's events as they arrive (nothing is buffered).
   * Ending the iteration early, or aborting the signal, cancels the call.
   */
  async *generate(req: GenerateRequest, opts: GenerateOptions = {}): AsyncGenerator<GenerateEvent> {
    const { signal } = opts;
    if (signal?.aborted) throw new EngineCallError(this.address, "Generate", status.CANCELLED, "cancelled", "aborted before the call");
    const call = this.raw.generate(req, new Metadata(), opts.deadlineMs ? { deadline: Date.now() + opts.deadlineMs } : {});
    const cancel = () => call.cancel();
    signal?.addEventListener("abort", cancel, { once: true });
    // One timer for the whole call, re-armed by each event (a timer per event would cost every token).
    const stallMs = opts.stallMs ?? 0;
    let lastEvent = 0;
    let stalled = false;
    let timer: NodeJS.Timeout | undefined;
    // While the consumer holds an event (a slow reader downstream), the call
    // is paused by us, not silent: that time is not the engine's.
    let held = false;
    const watch = () => {
      const idle = held ? 0 : performance.now() - lastEvent;
      if (idle < stallMs) timer = setTimeout(watch, stallMs - idle);
      else {
        stalled = true;
        call.cancel();
      }
    };
    let finished = false;
    try {
      for await (const ev of call as AsyncIterable<GenerateEvent>) {
        if (stallMs > 0) {
          lastEvent = performance.now();
          if (!timer && ev.event?.$case === "started") timer = setTimeout(watch, stallMs);
        }
        held = true;
        yield ev;
        held = false;
        lastEvent = performance.now();
      }
      finished = true;
    } catch (err) {
      finished = true;
      if (stalled) throw new EngineCallError(this.address, "Generate", status.DEADLINE_EXCEEDED, "stalled", `no event from the engine for ${stallMs} ms`);
      throw toEngineError(err, this.address, "Generate");
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", cancel);
      if (!finished) call.cancel(); // the consumer stopped iterating: free the engine's slot
    }
  }

  close(): void {
    this.raw.close();
  }
}

export class TranscriptionEngineClient {
  /** The stub, for the streaming calls (Stream, Transcribe), with the endpoint's channel and token. */
  readonly raw: TranscriptionClient;

  constructor(
    readonly address: string,
    options: ClientOptions,
    private readonly timeoutMs: number,
  ) {
    this.raw = new TranscriptionClient(address, credentials.createInsecure(), options);
  }

  info(): Promise<TranscriptionInfo> {
    return unary(this.address, "Info", this.raw.info.bind(this.raw), {}, this.timeoutMs);
  }

  close(): void {
    this.raw.close();
  }
}

export function healthClient(address: string, options: ClientOptions): HealthClient {
  return new HealthClient(address, credentials.createInsecure(), options);
}
