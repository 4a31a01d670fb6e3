// One Converse call: a device's voice session, from its config to its end.
//
//   device ──config, audio…, end_of_audio, audio…──▶ SpeechInput (engine streams, VAD)
//   speech events ──▶ stt_partial / stt_final ──▶ a turn per final ──▶ intent, reply_delta…, reply_end | error
//
// Turns run one at a time, in utterance order. New speech while a turn runs
// (the engine's VAD reports a speech start, a partial or a final of a later
// utterance) is a barge-in: the running turn is aborted (its request ends
// ABORTED, the partial reply kept, and the device gets reply_end with
// finish_reason "cancelled"), and the next final starts a new turn. Finals
// that arrive while an aborted turn winds down are answered together, as one
// message, by the next turn.
//
// How a call ends:
//   - the device half-closes: the last utterance is flushed, the running and
//     queued turns finish, then OK;
//   - the device cancels: the running turn is aborted;
//   - the credential refused at a turn (revoked, expired, its user disabled
//     since the call began): UNAUTHENTICATED, before the turn is stored;
//   - a protocol error of the device (INVALID_ARGUMENT: audio before config,
//     a second config, an empty message, a bad config, a chunk that is not
//     whole frames of raw samples), a conversation that is not the caller's
//     (NOT_FOUND), no transcription engine (UNAVAILABLE) or the server
//     stopping: a status; the running turn is aborted.
// What a well-formed session survives is an `error` event, and the stream
// goes on: an utterance the engine could not decode, a turn that failed
// (its request id given), a turn refused by a limit (rate_limited,
// too_many_streams) or by a busy / missing engine.
import { randomUUID } from "node:crypto";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { Metadata, status } from "@grpc/grpc-js";
import type { Logger, TurnHandle } from "@jota/control-plane";
import type { ConverseIn, ConverseOut } from "@jota/control-plane/gen/jota/v1/assistant";
import type { Principal, Scope } from "../auth/principal";
import type { GatewayContext } from "../context";
import type { DeviceConversations } from "./devices";
import { authenticateCall } from "./auth";
import { EdgeError, toServiceError } from "./errors";
import { checkAudio, converseSettings, type ConverseSettings } from "./settings";
import { SpeechInput } from "./speech";
import { abortedBy, pipelineEvents, startDeviceTurn } from "./turns";

export interface ConverseDeps {
  ctx: GatewayContext;
  devices: DeviceConversations;
  log: Logger;
  partialIntervalMs: number;
  rotateAfterS: number;
  idleFlushMs?: number;
}

type Call = ServerDuplexStream<ConverseIn, ConverseOut>;

/** What a Converse call needs of its credential, at its start and at each turn. */
export const CONVERSE_SCOPES: Scope[] = ["chat", "audio"];

export class ConverseSession {
  readonly id = randomUUID();
  private settings: ConverseSettings | undefined;
  private speech: SpeechInput | undefined;
  private deviceKey: string | undefined;
  /** The key is this session's own (no device identity): forgotten when it ends. */
  private ownKey = false;
  /** The conversation the config named (undefined: the device's current one). */
  private explicitConversation: string | undefined;
  /** The utterance the latest final belongs to: speech of a later one is new speech. */
  private lastFinal = -1;
  private firstAudio = true;
  /** Messages are handled one after another; the call is paused meanwhile (backpressure). */
  private inputChain: Promise<void> = Promise.resolve();
  private transcripts: Promise<void> | undefined;
  private readonly pending: string[] = [];
  private looping = false;
  private turnsIdle: (() => void) | undefined;
  private current: { ac: AbortController; handle?: TurnHandle } | undefined;
  private ended = false;
  /** Aborted when the call ends: releases waits on the device. */
  private readonly stopped = new AbortController();
  private readonly log: Logger;
  /** Resolves when the call has ended, however it ended, with its status code. */
  readonly done: Promise<status>;
  private resolveDone!: (code: status) => void;

  constructor(
    private readonly deps: ConverseDeps,
    private readonly call: Call,
    private readonly p: Principal,
  ) {
    this.log = deps.log.child({ session: this.id, userId: p.userId });
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  /** Starts reading the device's messages. */
  run(): void {
    const { call } = this;
    call.on("data", (m: ConverseIn) => {
      call.pause();
      this.inputChain = this.inputChain
        .then(() => (this.ended ? undefined : this.onMessage(m)))
        .then(
          () => {
            if (!this.ended) call.resume();
          },
          (err) => this.fail(err),
        );
    });
    call.on("end", () => {
      this.inputChain = this.inputChain.then(() => this.onHalfClose()).catch((err) => this.fail(err));
    });
    call.on("cancelled", () => this.stop(status.CANCELLED, "the device cancelled the stream"));
    call.on("error", () => {}); // a broken connection also reports `cancelled`
  }

  private async onMessage(m: ConverseIn): Promise<void> {
    const msg = m.msg;
    if (!msg) throw EdgeError.invalid("a ConverseIn with none of config, audio, end_of_audio");
    if (msg.$case === "config") {
      if (this.settings) throw EdgeError.invalid("config may only be sent once, as the first message");
      await this.configure(converseSettings(msg.value));
      return;
    }
    const settings = this.settings;
    if (!settings) throw EdgeError.invalid(`the first message must be config; ${msg.$case === "audio" ? "audio" : "end_of_audio"} comes after it`);
    if (msg.$case === "audio") {
      checkAudio(settings, msg.value, this.firstAudio);
      if (msg.value.length > 0) this.firstAudio = false;
      if (msg.value.length > 0) await this.speech!.write(msg.value);
      return;
    }
    if (!msg.value) throw EdgeError.invalid("end_of_audio must be true when sent");
    this.speech!.flush();
  }

  private async configure(s: ConverseSettings): Promise<void> {
    const { ctx, devices } = this.deps;
    // NOT_FOUND before anything is opened or stored.
    if (s.conversationId) await ctx.repos.conversations.get(this.p.userId, s.conversationId);
    // Ended meanwhile (cancelled, server stopping): end() found no speech to stop, so none may be opened now.
    if (this.ended) return;
    this.settings = s;
    this.explicitConversation = s.conversationId;
    // Without a device identity the session itself is the "device": its turns share one conversation.
    const deviceKey = devices.key(this.p, s.deviceId);
    this.ownKey = deviceKey === undefined;
    this.deviceKey = deviceKey ?? `${this.p.userId}/stream/${this.id}`;
    const speech = new SpeechInput(ctx.stack.pool, s, { requestId: this.id, partialIntervalMs: this.deps.partialIntervalMs, rotateAfterS: this.deps.rotateAfterS, idleFlushMs: this.deps.idleFlushMs }, this.log);
    speech.start();
    this.speech = speech;
    this.transcripts = this.readSpeech(speech).catch((err) => this.fail(err));
  }

  private async readSpeech(speech: SpeechInput): Promise<void> {
    for await (const ev of speech.events()) {
      if (this.ended) return;
      switch (ev.type) {
        case "speech_started":
          if (ev.utterance > this.lastFinal) this.bargeIn("barge-in: the user spoke again");
          break;
        case "speech_ended":
          break;
        case "partial":
          if (ev.utterance > this.lastFinal) this.bargeIn("barge-in: the user spoke again");
          this.send({ $case: "sttPartial", value: { text: ev.text } });
          break;
        case "final":
          this.lastFinal = Math.max(this.lastFinal, ev.utterance);
          this.send({ $case: "sttFinal", value: { text: ev.text, language: ev.language, startS: ev.startS, endS: ev.endS } });
          if (ev.text.trim() !== "") this.enqueue(ev.text.trim());
          break;
        case "error":
          this.send({ $case: "error", value: { code: ev.code, message: ev.message, requestId: "" } });
          break;
      }
    }
  }

  private async onHalfClose(): Promise<void> {
    if (this.ended) return;
    if (!this.speech) throw EdgeError.invalid("the stream ended before its config message");
    this.speech.end();
    const watch = setInterval(() => this.noticeCancel(), 100);
    try {
      await this.transcripts;
      await this.turnsDone();
    } finally {
      clearInterval(watch);
    }
    this.finish();
  }

  /**
   * A device's cancel reaches the server as a half-close (HTTP/2 ends the
   * request body, then resets the stream), and grpc-js reports `cancelled`
   * only when the call is next used; a write stuck behind the reset never
   * gets that far. Asking it to send headers (a no-op once sent) makes it
   * check, so a cancel is noticed (on the next tick) while a turn streams
   * or the last utterance is decoded, and the turn is aborted.
   */
  private noticeCancel() {
    if (!this.ended && !this.call.cancelled) this.call.sendMetadata(new Metadata());
  }

  /** A user message to answer: aborts the running turn (barge-in) and queues this one. */
  private enqueue(text: string) {
    this.pending.push(text);
    this.bargeIn("barge-in: the user spoke again", true);
    if (this.looping) return;
    this.looping = true;
    void this.runTurns();
  }

  private async runTurns(): Promise<void> {
    try {
      while (this.pending.length > 0 && !this.ended) await this.runTurn(this.pending.splice(0).join(" "));
    } finally {
      this.looping = false;
      this.turnsIdle?.();
    }
  }

  private turnsDone(): Promise<void> {
    if (!this.looping) return Promise.resolve();
    return new Promise((r) => (this.turnsIdle = r));
  }

  /**
   * `final`: a final is queued. Speech alone (its start, a partial) leaves a turn that has not begun yet (its
   * credential check, its wait for a busy conversation) to go on: aborted there, it would be queued again
   * (runTurn) and retried at every partial; the final that follows aborts it, and it is answered with that.
   */
  private bargeIn(reason: string, final = false) {
    const cur = this.current;
    if (cur && !cur.ac.signal.aborted && (final || cur.handle)) {
      this.log.info("barge-in", { requestId: cur.handle?.requestId });
      cur.ac.abort(new Error(reason));
    }
  }

  private async runTurn(text: string): Promise<void> {
    const { ctx, devices } = this.deps;
    const ac = new AbortController();
    const cur: { ac: AbortController; handle?: TurnHandle } = { ac };
    this.current = cur;
    try {
      // The credential again at every turn, which also counts it for the rate
      // limit: a session may live for hours, and a device token revoked (or
      // its user disabled) since the call began must stop it, as a WS socket
      // is closed. A check that could not be made (the database) fails only
      // this turn.
      try {
        await authenticateCall(ctx, this.call.metadata, CONVERSE_SCOPES);
      } catch (err) {
        const code = toServiceError(err).code;
        if (code === status.UNAUTHENTICATED || code === status.PERMISSION_DENIED) return this.fail(err);
        throw err;
      }
      // A barge-in during the check still starts the turn (it is aborted at
      // once, the user message kept): returning here would drop what was said.
      if (this.ended) return;
      const turn = await startDeviceTurn(ctx, devices, this.p, { key: this.deviceKey, conversationId: this.explicitConversation }, text, ac.signal);
      cur.handle = turn.handle;
      const abort = () => turn.handle.abort((ac.signal.reason as Error)?.message);
      if (ac.signal.aborted || this.ended) abort();
      else ac.signal.addEventListener("abort", abort, { once: true });
      // A device that reads slowly holds the forwarding, not the turn: the events wait in the turn's log.
      for await (const ev of pipelineEvents(turn.handle)) if (!this.send(ev)) await this.drained();
    } catch (err) {
      if (this.ended) return;
      // A barge-in while the turn waited for its conversation (busy with another turn): it never began, and
      // nothing of it was stored, so what was said goes back in the queue and is answered with the next final.
      if (!cur.handle && abortedBy(err, ac.signal)) {
        this.pending.unshift(text);
        return;
      }
      const e = toServiceError(err);
      // rate_limited is counted where the credential check refused it (authenticateCall).
      if (e.code === status.RESOURCE_EXHAUSTED && e.jotaCode !== "rate_limited") ctx.metrics.rateLimited.inc({ interface: "grpc" });
      if (e.code === status.INTERNAL) this.log.error("voice turn failed to start", { error: (err as Error)?.stack ?? String(err) });
      this.send({ $case: "error", value: { code: e.jotaCode, message: e.details, requestId: "" } });
    } finally {
      this.current = undefined;
    }
  }

  /** False when the device's side is full: wait for drained() before the next reply event. */
  private send(event: NonNullable<ConverseOut["event"]>): boolean {
    if (this.ended) return true;
    this.noticeCancel();
    return this.call.write({ event });
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.call.off("drain", done);
        this.stopped.signal.removeEventListener("abort", done);
        resolve();
      };
      this.call.once("drain", done);
      this.stopped.signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Ends the call OK (everything answered). */
  private finish() {
    this.end(status.OK, undefined, () => this.call.end());
  }

  /** Ends the call with the status of `err`; the running turn is aborted. */
  fail(err: unknown) {
    if (this.ended) return;
    const e = toServiceError(err);
    if (e.code === status.INTERNAL) this.log.error("converse failed", { error: (err as Error)?.stack ?? String(err) });
    else this.log.info("converse refused", { code: status[e.code], details: e.details });
    this.end(e.code, "the stream ended: " + e.details, () => this.call.emit("error", e));
  }

  /** Ends the call now: the device cancelled it (nothing to send) or the server stops (UNAVAILABLE). */
  stop(code: status.CANCELLED | status.UNAVAILABLE, reason: string) {
    if (code === status.UNAVAILABLE) this.fail(new EdgeError(status.UNAVAILABLE, "unavailable", reason));
    else this.end(code, reason, () => {});
  }

  /** Once: stops the engine streams and the turns (with `reason`), tells the device, reports the status. */
  private end(code: status, reason: string | undefined, tell: () => void) {
    if (this.ended) return;
    this.ended = true;
    this.stopped.abort();
    try {
      this.speech?.cancel();
      this.pending.length = 0;
      if (reason) this.current?.ac.abort(new Error(reason));
      // A session's own "device" key is forgotten with it; a real device keeps its current conversation.
      if (this.ownKey && this.deviceKey) this.deps.devices.drop(this.deviceKey);
      tell();
    } catch (err) {
      this.log.error("converse: ending the session failed", { error: (err as Error)?.stack ?? String(err) });
    } finally {
      this.resolveDone(code);
    }
  }
}
