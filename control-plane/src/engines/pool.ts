// The engine pool: every configured inference and transcription endpoint,
// each watched continuously, and the choice of which one serves a request.
//
// Per endpoint:
// - health comes from grpc.health.v1 Watch, a stream the engine pushes
//   status changes on; when the engine dies the stream breaks at once, so the
//   pool knows within milliseconds, not at the next poll;
// - load comes from Info (slots_total, slots_busy, queue_length), polled
//   with a deadline while the engine is serving; an Info call that fails or
//   times out also marks the engine down (a hung engine keeps its TCP
//   connection, so only a deadline notices it);
// - after a failure the endpoint reconnects by itself, with exponential
//   backoff and jitter, for as long as the pool runs.
//
// Choice (inference): the conversation's engine while it is healthy and its
// queue is not full, since it holds the conversation's KV cache and a warm
// cache saves re-reading the whole history; otherwise the healthy engine
// with the most free capacity. Callers hold a lease while their call runs,
// so choices made between two Info polls see each other.
import { EventEmitter } from "node:events";
import type { Channel, ClientReadableStream } from "@grpc/grpc-js";
import type { HealthClient, HealthCheckResponse } from "../gen/grpc/health/v1/health";
import { HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health";
import type { GenerateEvent, GenerateRequest, InferenceInfo } from "../gen/jota/v1/inference";
import type { TranscriptionInfo } from "../gen/jota/v1/transcription";
import type { Logger } from "../log";
import {
  InferenceEngineClient,
  TranscriptionEngineClient,
  healthClient,
  openChannel,
  toEngineError,
  type EngineKind,
  type GenerateOptions,
} from "./clients";

export interface PoolOptions {
  inference: string[];
  transcription: string[];
  /** Bearer token for every engine call; empty sends none. */
  token: string;
  logger: Logger;
  /** Deadline of each unary call (Info and the clients' calls). Default 2000. */
  callTimeoutMs?: number;
  /** Info poll period while an engine serves. Default 1000. */
  infoIntervalMs?: number;
  /** Reconnect backoff: first delay and cap. Defaults 200 and 10000. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

export type EngineHealth = "connecting" | "serving" | "not_serving" | "down";

export interface EngineStatus {
  kind: EngineKind;
  address: string;
  health: EngineHealth;
  /** Why it is not serving (the last error or status), if it is not. */
  reason: string | undefined;
  since: Date;
  slotsTotal: number;
  slotsBusy: number;
  queueLength: number;
  queueMax: number;
  /** Context tokens per slot of the chat model (inference). */
  contextSize: number;
  /** Leases held on it by this process. */
  inflight: number;
  reconnectAttempt: number;
}

export class EngineUnavailableError extends Error {
  constructor(
    readonly kind: EngineKind,
    readonly engines: EngineStatus[],
  ) {
    super(
      engines.length === 0
        ? `no ${kind} engine is configured`
        : `no healthy ${kind} engine: ${engines.map((e) => `${e.address} ${e.health}${e.reason ? ` (${e.reason})` : ""}`).join("; ")}`,
    );
    this.name = "EngineUnavailableError";
  }
}

const SERVICE: Record<EngineKind, string> = { inference: "jota.v1.Inference", transcription: "jota.v1.Transcription" };

/** One endpoint: its clients, its health watch, its load, its reconnection. */
export class Endpoint<C extends InferenceEngineClient | TranscriptionEngineClient = InferenceEngineClient | TranscriptionEngineClient> {
  readonly client: C;
  private readonly channel: Channel;
  private readonly health: HealthClient;
  private watch: ClientReadableStream<HealthCheckResponse> | undefined;
  private infoTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private _status: EngineStatus;
  inflight = 0;
  picks = 0;

  constructor(
    readonly kind: EngineKind,
    readonly address: string,
    private readonly opts: Required<Omit<PoolOptions, "inference" | "transcription">>,
    private readonly onChange: (s: EngineStatus, healthChanged: boolean) => void,
  ) {
    const { channel, options } = openChannel(address, {
      token: opts.token,
      reconnectInitialMs: opts.backoffInitialMs,
      reconnectMaxMs: opts.backoffMaxMs,
    });
    this.channel = channel;
    this.health = healthClient(address, options);
    this.client = (
      kind === "inference"
        ? new InferenceEngineClient(address, options, opts.callTimeoutMs)
        : new TranscriptionEngineClient(address, options, opts.callTimeoutMs)
    ) as C;
    this._status = {
      kind,
      address,
      health: "connecting",
      reason: undefined,
      since: new Date(),
      slotsTotal: 0,
      slotsBusy: 0,
      queueLength: 0,
      queueMax: 0,
      contextSize: 0,
      inflight: 0,
      reconnectAttempt: 0,
    };
  }

  get status(): EngineStatus {
    return { ...this._status, inflight: this.inflight };
  }

  get healthy(): boolean {
    return this._status.health === "serving";
  }

  /** Estimated free capacity: free slots minus waiting requests (negative when queued). */
  get capacity(): number {
    const s = this._status;
    return s.slotsTotal - Math.max(s.slotsBusy, this.inflight) - s.queueLength;
  }

  get queueFull(): boolean {
    return this._status.queueMax > 0 && this._status.queueLength >= this._status.queueMax;
  }

  start(): void {
    this.connect();
  }

  /** A call on this engine failed as if it were gone: believe it now rather than at the next event. */
  reportFailure(reason: string): void {
    if (this.closed || this._status.health === "down") return;
    this.fail(reason);
  }

  /** Every health change is reported, and so is every failed reconnection attempt. */
  private set(patch: Partial<EngineStatus>) {
    const healthChanged = patch.health !== undefined && patch.health !== this._status.health;
    const attempted = patch.reconnectAttempt !== undefined && patch.reconnectAttempt > this._status.reconnectAttempt;
    this._status = { ...this._status, ...patch, ...(healthChanged ? { since: new Date() } : {}) };
    if (healthChanged || attempted) this.onChange(this.status, healthChanged);
  }

  private connect() {
    if (this.closed) return;
    const watch = this.health.watch({ service: SERVICE[this.kind] });
    this.watch = watch;
    watch.on("data", (res: HealthCheckResponse) => {
      if (this.watch !== watch) return;
      if (res.status === HealthCheckResponse_ServingStatus.SERVING) {
        void this.pollInfo(watch, true);
      } else {
        this.stopPolling();
        const name = HealthCheckResponse_ServingStatus[res.status] ?? String(res.status);
        this.set({ health: "not_serving", reason: `health: ${name}` });
      }
    });
    watch.on("error", (err) => {
      if (this.watch === watch) this.fail(toEngineError(err, this.address, "Health.Watch").message);
    });
    watch.on("end", () => {
      if (this.watch === watch) this.fail("health stream ended");
    });
  }

  private async pollInfo(watch: ClientReadableStream<HealthCheckResponse>, first: boolean) {
    this.stopPolling();
    try {
      const info = await (this.client as InferenceEngineClient | TranscriptionEngineClient).info();
      if (this.watch !== watch || this.closed) return;
      this.set({ ...load(info), health: "serving", reason: undefined, reconnectAttempt: 0 });
      this.infoTimer = setTimeout(() => void this.pollInfo(watch, false), this.opts.infoIntervalMs);
    } catch (err) {
      if (this.watch !== watch || this.closed) return;
      this.fail(`${first ? "first " : ""}${(err as Error).message}`);
    }
  }

  private stopPolling() {
    if (this.infoTimer) clearTimeout(this.infoTimer);
    this.infoTimer = undefined;
  }

  /** Down: drop the watch, reconnect after a backoff with jitter. */
  private fail(reason: string) {
    this.stopPolling();
    const watch = this.watch;
    this.watch = undefined;
    watch?.cancel();
    const attempt = this._status.reconnectAttempt;
    this.set({ health: "down", reason, reconnectAttempt: attempt + 1 });
    if (this.closed || this.reconnectTimer) return;
    const base = Math.min(this.opts.backoffMaxMs, this.opts.backoffInitialMs * 2 ** attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2)); // "equal jitter": never 0, never in lock-step
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, delay);
  }

  close(): void {
    this.closed = true;
    this.stopPolling();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.watch?.cancel();
    this.watch = undefined;
    this.client.close();
    this.health.close();
    this.channel.close();
  }
}

function load(info: InferenceInfo | TranscriptionInfo): Partial<EngineStatus> {
  if ("slotsBusy" in info)
    return {
      slotsTotal: info.slotsTotal,
      slotsBusy: info.slotsBusy,
      queueLength: info.queueLength,
      queueMax: info.queueMax,
      contextSize: info.chatModel?.contextSize ?? 0,
    };
  // Transcription engines report no slots: one stream at a time per engine as far as the pool can tell.
  return { slotsTotal: 1, slotsBusy: 0, queueLength: 0, queueMax: 0, contextSize: 0 };
}

/** A chosen engine, held while a call on it runs. */
export interface EngineLease<C> {
  readonly address: string;
  readonly client: C;
  /** Context tokens per slot (inference), for trimming the history to fit. */
  readonly contextSize: number;
  /** Why this engine: the conversation's own, or the least loaded (and the affinity it replaced). */
  readonly reason: "affinity" | "least_loaded";
  /** The conversation's previous engine, when this choice moved it elsewhere. */
  readonly movedFrom: string | undefined;
  /**
   * Ends the lease. Pass the error if the call failed: an engine that went
   * away (UNAVAILABLE) is marked down at once, so the next choice avoids it.
   */
  release(err?: unknown): void;
}

export interface PickOptions {
  /** The engine that holds the conversation's KV cache (its stored affinity). */
  affinity?: string | null;
  /** Engines not to choose (e.g. one that just failed this request). */
  exclude?: Iterable<string>;
}

/** Emits "change" (EngineStatus) on every health change and every failed reconnection attempt. */
export class EnginePool extends EventEmitter {
  readonly inference: Endpoint<InferenceEngineClient>[];
  readonly transcription: Endpoint<TranscriptionEngineClient>[];
  private readonly logger: Logger;

  constructor(opts: PoolOptions) {
    super();
    const full = {
      token: opts.token,
      logger: opts.logger,
      callTimeoutMs: opts.callTimeoutMs ?? 2000,
      infoIntervalMs: opts.infoIntervalMs ?? 1000,
      backoffInitialMs: opts.backoffInitialMs ?? 200,
      backoffMaxMs: opts.backoffMaxMs ?? 10_000,
    };
    this.logger = opts.logger.child({ component: "engine-pool" });
    const onChange = (s: EngineStatus, healthChanged: boolean) => {
      // Transitions are news; the retries of an engine that stays down are not.
      const log = !healthChanged ? this.logger.debug : s.health === "serving" ? this.logger.info : this.logger.warn;
      log(`engine ${s.health}`, { engine: s.address, kind: s.kind, reason: s.reason, attempt: s.reconnectAttempt });
      this.emit("change", s);
    };
    const unique = (list: string[]) => [...new Set(list)];
    this.inference = unique(opts.inference).map((a) => new Endpoint<InferenceEngineClient>("inference", a, full, onChange));
    this.transcription = unique(opts.transcription).map((a) => new Endpoint<TranscriptionEngineClient>("transcription", a, full, onChange));
    for (const e of [...this.inference, ...this.transcription]) e.start();
  }

  /** Every endpoint's state (for /health and logs). */
  status(): EngineStatus[] {
    return [...this.inference, ...this.transcription].map((e) => e.status);
  }

  /** Resolves once at least one engine of `kind` serves; rejects with EngineUnavailableError after `timeoutMs`. */
  ready(kind: EngineKind, timeoutMs: number): Promise<void> {
    const list = kind === "inference" ? this.inference : this.transcription;
    if (list.some((e) => e.healthy)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onChange = (s: EngineStatus) => {
        if (s.kind === kind && s.health === "serving") done();
      };
      const timer = setTimeout(() => {
        this.off("change", onChange);
        reject(new EngineUnavailableError(kind, list.map((e) => e.status)));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.off("change", onChange);
        resolve();
      };
      this.on("change", onChange);
    });
  }

  /** Chooses an inference engine (see the top of this file); throws EngineUnavailableError when none is healthy. */
  pickInference(opts: PickOptions = {}): EngineLease<InferenceEngineClient> {
    return this.pick("inference", this.inference, opts);
  }

  /** Chooses a transcription engine: the healthy one with the fewest calls in flight. */
  pickTranscription(opts: Omit<PickOptions, "affinity"> = {}): EngineLease<TranscriptionEngineClient> {
    return this.pick("transcription", this.transcription, opts);
  }

  private pick<C extends InferenceEngineClient | TranscriptionEngineClient>(
    kind: EngineKind,
    list: Endpoint<C>[],
    opts: PickOptions,
  ): EngineLease<C> {
    const exclude = new Set(opts.exclude ?? []);
    const healthy = list.filter((e) => e.healthy && !exclude.has(e.address));
    const own = opts.affinity ? healthy.find((e) => e.address === opts.affinity) : undefined;
    let chosen: Endpoint<C> | undefined;
    let reason: EngineLease<C>["reason"] = "least_loaded";
    if (own && !own.queueFull) {
      chosen = own;
      reason = "affinity";
    } else {
      // Most free capacity; among equals the least picked, so load spreads.
      chosen = healthy.sort((a, b) => b.capacity - a.capacity || a.picks - b.picks)[0];
    }
    if (!chosen) throw new EngineUnavailableError(kind, list.map((e) => e.status));
    chosen.picks++;
    chosen.inflight++;
    let released = false;
    const endpoint = chosen;
    return {
      address: endpoint.address,
      client: endpoint.client,
      contextSize: endpoint.status.contextSize,
      reason,
      movedFrom: opts.affinity && opts.affinity !== endpoint.address ? opts.affinity : undefined,
      release: (err?: unknown) => {
        if (released) return;
        released = true;
        endpoint.inflight--;
        if (err !== undefined) {
          const e = toEngineError(err, endpoint.address, "call");
          if (e.failure === "unavailable") endpoint.reportFailure(e.message);
        }
      },
    };
  }

  /**
   * One Generate on the least-loaded inference engine, for calls that belong
   * to no conversation (e.g. the intent router's); the lease is held for the
   * stream's life.
   */
  async *generate(req: GenerateRequest, opts: GenerateOptions = {}): AsyncGenerator<GenerateEvent> {
    const lease = this.pickInference();
    let failure: unknown;
    try {
      yield* lease.client.generate(req, opts);
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      lease.release(failure);
    }
  }

  close(): void {
    for (const e of [...this.inference, ...this.transcription]) e.close();
  }
}
