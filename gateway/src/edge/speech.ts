// A device's audio, transcribed: one or more Stream calls on transcription
// engines, in sequence, read as one ordered list of speech events.
//
// Why several engine streams for one Converse stream: the engine only
// flushes an utterance when its stream is half-closed, so `end_of_audio`
// half-closes the current engine stream and the next audio opens another;
// and an engine stream is limited in length (--max-audio-s), so a stream that
// has carried `rotateAfterS` of audio is replaced by a fresh one at the next
// pause in speech. Events are read stream after stream (a later stream's
// events wait until the earlier one has sent its last final), and times are
// shifted by the audio that went before, so start_s / end_s count from the
// start of the device's stream.
//
// A device that goes quiet (a satellite waiting for its wake word sends
// nothing) has its engine stream half-closed after `idleFlushMs` without
// audio: the engine sends what is left as finals and frees its decoder for
// other devices, and the next audio opens a fresh stream. Left open, the
// engine would end it itself (--stream-idle-s, default 60 s), dropping what
// it had not flushed.
import type { ClientDuplexStream, StatusObject } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import type { EngineLease, EnginePool, Logger, TranscriptionEngineClient } from "@jota/control-plane";
import type { AudioIn, TranscriptEvent } from "@jota/control-plane/gen/jota/v1/transcription";
import { EdgeError } from "./errors";
import { engineStreamConfig, type ConverseSettings } from "./settings";

/** `utterance` numbers the utterances of the whole device stream, in order (across engine streams). */
export type SpeechEvent =
  | { type: "speech_started"; utterance: number }
  | { type: "speech_ended"; utterance: number }
  | { type: "partial"; utterance: number; text: string }
  | { type: "final"; utterance: number; text: string; language: string; startS: number; endS: number }
  /** An utterance the engine could not decode; the stream goes on. */
  | { type: "error"; code: string; message: string };

export interface SpeechOptions {
  requestId: string;
  partialIntervalMs: number;
  rotateAfterS: number;
  /** Half-close the engine stream after this long without audio (default 20000; keep it under the engines' --stream-idle-s). */
  idleFlushMs?: number;
}

interface EngineStream {
  /** Its place among the device stream's engine streams. */
  index: number;
  call: ClientDuplexStream<AudioIn, TranscriptEvent>;
  lease: EngineLease<TranscriptionEngineClient>;
  /** Seconds of device audio before this stream. */
  offsetS: number;
  /** Seconds of audio written to it. */
  audioS: number;
  halfClosed: boolean;
  /** Between a speech start and its end, as last reported by the engine. */
  speaking: boolean;
  /** How the call ended (grpc-js always reports it; an 'error' event can come before anyone listens). */
  status: Promise<StatusObject>;
}

export class SpeechInput {
  /** The engine streams not yet read to their status, oldest first (events() drops each once read). */
  private readonly streams: EngineStream[] = [];
  /** How many engine streams this session has opened. */
  private opened = 0;
  private current: EngineStream | undefined;
  private totalS = 0;
  private ended = false;
  private wake: (() => void) | undefined;
  private lastAudio = 0;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pool: EnginePool,
    private readonly settings: ConverseSettings,
    private readonly opts: SpeechOptions,
    private readonly log: Logger,
  ) {}

  /** Opens the first engine stream now, so that no engine (UNAVAILABLE) is known at config time. */
  start(): void {
    this.current = this.open();
  }

  private open(): EngineStream {
    const lease = this.pool.pickTranscription();
    let call: ClientDuplexStream<AudioIn, TranscriptEvent>;
    try {
      call = lease.client.raw.stream();
    } catch (err) {
      lease.release(err);
      throw err;
    }
    const s: EngineStream = {
      index: this.opened++,
      call,
      lease,
      offsetS: this.totalS,
      audioS: 0,
      halfClosed: false,
      speaking: false,
      status: new Promise<StatusObject>((resolve) => call.once("status", resolve)),
    };
    call.on("error", () => {}); // the outcome is read from `status`
    // The lease ends with the call, once, whoever reads it and however the session ends: every call
    // reports a status, and one that is cancelled (cancel(), the reading stopped) reports it at once.
    void s.status.then((st) => lease.release(st.code === status.OK || st.code === status.CANCELLED ? undefined : st));
    call.write({ msg: { $case: "config", value: engineStreamConfig(this.settings, this.opts.requestId, this.opts.partialIntervalMs) } });
    this.streams.push(s);
    this.notify();
    this.lastAudio = performance.now();
    this.watchIdle();
    return s;
  }

  /** One timer per open stream, re-armed from the last audio (a timer per chunk would cost every chunk). */
  private watchIdle() {
    const limit = this.opts.idleFlushMs ?? 20_000;
    if (this.idleTimer || limit <= 0) return;
    const check = () => {
      this.idleTimer = undefined;
      if (this.ended || !this.current) return;
      const quiet = performance.now() - this.lastAudio;
      if (quiet >= limit) this.flush();
      else this.idleTimer = setTimeout(check, limit - quiet);
    };
    this.idleTimer = setTimeout(check, limit);
  }

  /** Writes one checked chunk; resolves when the engine can take more (backpressure reaches the device). */
  async write(chunk: Buffer): Promise<void> {
    if (this.ended) return;
    const cur = this.current;
    if (cur && cur.audioS >= this.opts.rotateAfterS && !cur.speaking) this.flush();
    const s = (this.current ??= this.open());
    this.lastAudio = performance.now();
    const seconds = chunk.length / this.settings.bytesPerFrame / this.settings.sampleRate;
    s.audioS += seconds;
    this.totalS += seconds;
    if (!s.call.write({ msg: { $case: "audio", value: chunk } }))
      await Promise.race([new Promise((r) => s.call.once("drain", r)), s.status]);
  }

  /** Ends the current utterance: its engine stream is half-closed (it sends its finals); later audio opens a new one. */
  flush(): void {
    const s = this.current;
    this.current = undefined;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (s && !s.halfClosed) {
      s.halfClosed = true;
      s.call.end();
    }
  }

  /** No more audio: the events end after the last stream's finals. */
  end(): void {
    this.flush();
    this.ended = true;
    this.notify();
  }

  /** Stops every engine stream now (their utterances are dropped). */
  cancel(): void {
    this.ended = true;
    this.current = undefined;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    for (const s of this.streams) s.call.cancel();
    this.notify();
  }

  /**
   * The events of every engine stream, in order. Throws an EdgeError when an
   * engine stream fails (refused config, engine gone); not when cancelled.
   */
  async *events(): AsyncGenerator<SpeechEvent> {
    try {
      for (;;) {
        while (this.streams.length === 0) {
          if (this.ended) return;
          await new Promise<void>((r) => (this.wake = r));
        }
        const s = this.streams[0]!;
        try {
          for await (const ev of s.call as AsyncIterable<TranscriptEvent>) {
            const out = this.map(s, ev);
            if (out) yield out;
          }
        } catch {
          // The status below says why.
        }
        const st = await s.status;
        // Read to its end: a session that lives for days opens one per utterance, and keeps none of them.
        this.streams.shift();
        if (st.code === status.OK) continue;
        if (st.code === status.CANCELLED && this.ended) return;
        throw this.engineError(s, st);
      }
    } finally {
      // Nothing reads the engine streams after this (the consumer stopped early, one failed, or all
      // ended): those still open, the one being read or later ones, are stopped, freeing their decoders.
      this.cancel();
    }
  }

  private map(s: EngineStream, ev: TranscriptEvent): SpeechEvent | undefined {
    const e = ev.event;
    // An engine stream holds far fewer than a million utterances (--max-audio-s).
    const utterance = (n: number) => s.index * 1_000_000 + n;
    switch (e?.$case) {
      case "speechStarted":
        s.speaking = true;
        return { type: "speech_started", utterance: utterance(e.value.utterance) };
      case "speechEnded":
        s.speaking = false;
        return { type: "speech_ended", utterance: utterance(e.value.utterance) };
      case "partial":
        return { type: "partial", utterance: utterance(e.value.utterance), text: e.value.text };
      case "final":
        return { type: "final", utterance: utterance(e.value.utterance), text: e.value.text, language: e.value.language, startS: s.offsetS + e.value.startS, endS: s.offsetS + e.value.endS };
      case "error":
        return { type: "error", code: e.value.code.toLowerCase() || "transcription_error", message: e.value.message };
      default:
        return undefined;
    }
  }

  private engineError(s: EngineStream, e: StatusObject): EdgeError {
    this.log.warn("transcription stream failed", { engine: s.lease.address, code: e.code, details: e.details });
    // The gateway checks frames and formats itself: what the engine refuses is what only it knows (the language).
    if (e.code === status.INVALID_ARGUMENT || e.code === status.OUT_OF_RANGE)
      return EdgeError.invalid(`the transcription engine refused the stream: ${e.details}`);
    if (e.code === status.RESOURCE_EXHAUSTED)
      return new EdgeError(status.RESOURCE_EXHAUSTED, "engine_unavailable", `the transcription engine is busy: ${e.details}`);
    return new EdgeError(status.UNAVAILABLE, "engine_unavailable", `transcription engine ${s.lease.address} failed: ${status[e.code]}: ${e.details}`);
  }

  private notify() {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}
