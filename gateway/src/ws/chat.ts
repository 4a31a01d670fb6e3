// One chat socket: its client frames in, its turns' frames out.
//
// Several turns may run on one socket at once (each in its own conversation:
// a conversation runs one turn at a time), keyed by request id. A turn is
// started with the same startTurn as every other interface, and its events
// are read from the runner's handle and turned into frames; the socket only
// reads, so a slow socket never slows a turn (the Outbox coalesces instead).
// When the socket closes, for any reason, its turns are aborted: nobody is
// left to read them (the REST API is the way to start turns that outlive
// their caller).
//
// A socket may also watch the user's ingest jobs (watch_job / unwatch_job):
// ws/jobs.ts; its watches end with it.
import type { WebSocket, RawData } from "ws";
import type { Logger, TurnEvent } from "@jota/control-plane";
import type { GatewayContext } from "../context";
import type { Principal } from "../auth/principal";
import { hasScope } from "../auth/principal";
import { ApiError, toApiError } from "../http/errors";
import { startTurn, type StartedTurn } from "../turns";
import {
  endFrame,
  errorFrame,
  frameIdOf,
  parseClientFrame,
  startFrame,
  TURN_ERROR_CODES,
  type AbortFrame,
  type ClientFrame,
  type FrameId,
  type MessageFrame,
  type WatchJobFrame,
} from "./frames";
import { DEFAULT_MAX_JOB_WATCHES, JobWatches, type JobEvents } from "./jobs";
import { Outbox, type OutboxOptions } from "./outbox";

/** Close codes this endpoint uses beyond the ones `ws` sends itself (1007 invalid UTF-8, 1009 frame too big). */
export const CLOSE = {
  /** The server is stopping. */
  goingAway: 1001,
  /** The credential was revoked or expired while the socket was open. */
  policy: 1008,
} as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A turn this socket started: from its message frame (no handle yet) to its last event. */
interface SocketTurn {
  ref: FrameId | undefined;
  handle?: StartedTurn["handle"];
  /** An abort that came before the turn had a handle (it is aborted as soon as it has one). */
  abortReason?: string;
}

export class ChatConnection {
  readonly outbox: Outbox;
  readonly watches: JobWatches;
  private readonly turns = new Set<SocketTurn>();
  private readonly stop = new AbortController();
  private closed = false;
  private pongSeen = true;
  /** Reading was paused (backpressure) at some point since the last heartbeat: pongs could not be read. */
  private pausedSinceBeat = false;

  constructor(
    private readonly ctx: GatewayContext,
    readonly ws: WebSocket,
    private readonly principal: Principal,
    /** The credential presented at the upgrade, checked again on each message frame (it may be revoked meanwhile). */
    private readonly credential: string,
    outbox: OutboxOptions,
    private readonly log: Logger,
    /** The process's job events (undefined without Redis), and how many jobs this socket may watch at once. */
    jobs: { events: JobEvents | undefined; maxWatches?: number } = { events: undefined },
  ) {
    this.outbox = new Outbox(
      ws,
      outbox,
      (type) => ctx.metrics.wsFrames.inc({ direction: "out", type }),
      (congested) => {
        if (congested) {
          ws.pause();
          this.pausedSinceBeat = true;
        } else ws.resume();
      },
    );
    this.watches = new JobWatches(jobs.events, this.outbox, jobs.maxWatches ?? DEFAULT_MAX_JOB_WATCHES, log);
    ctx.metrics.wsConnections.inc();
    ws.on("message", (data, isBinary) => this.onFrame(data, isBinary));
    ws.on("pong", () => (this.pongSeen = true));
    ws.on("error", (err) => this.log.info("websocket error", { error: err.message }));
    ws.once("close", (code, reason) => this.onClose(code, reason.toString()));
  }

  /**
   * One heartbeat: false when the peer is gone (no pong since the last ping,
   * and no sign that it still reads while its pongs could not be read).
   */
  heartbeat(): boolean {
    const alive = this.pongSeen || (this.pausedSinceBeat && this.outbox.progressed);
    if (!alive) return false;
    this.pongSeen = false;
    this.pausedSinceBeat = this.ws.isPaused;
    this.outbox.progressed = false;
    this.ws.ping();
    return true;
  }

  private onClose(code: number, reason: string) {
    this.closed = true;
    this.stop.abort();
    for (const t of this.turns) this.abortTurn(t, "the WebSocket closed");
    this.watches.close();
    this.outbox.close();
    this.ctx.metrics.wsConnections.dec();
    this.log.debug("websocket closed", { code, reason, turnsAborted: this.turns.size });
  }

  private onFrame(data: RawData, isBinary: boolean) {
    if (isBinary) {
      this.ctx.metrics.wsFrames.inc({ direction: "in", type: "binary" });
      this.outbox.send(errorFrame(new ApiError(415, "unsupported_media_type", "binary frames are not part of the protocol: send JSON as text frames")));
      return;
    }
    let frame: ClientFrame;
    try {
      frame = parseClientFrame(Buffer.isBuffer(data) ? data.toString("utf8") : Buffer.concat(data as Buffer[]).toString("utf8"));
    } catch (err) {
      this.ctx.metrics.wsFrames.inc({ direction: "in", type: "invalid" });
      this.outbox.send(errorFrame(toApiError(err), { id: frameIdOf(err) }));
      return;
    }
    this.ctx.metrics.wsFrames.inc({ direction: "in", type: frame.type });
    switch (frame.type) {
      case "ping":
        this.outbox.send(frame.id === undefined ? { type: "pong" } : { type: "pong", id: frame.id });
        return;
      case "abort":
        return this.onAbort(frame);
      case "message":
        void this.onMessage(frame);
        return;
      case "watch_job":
        return this.onWatchJob(frame);
      case "unwatch_job":
        return this.watches.unwatch(frame.job_id);
    }
  }

  private onWatchJob(f: WatchJobFrame) {
    // Checked again like a message's: a key revoked since the upgrade reads no more jobs.
    this.watches.watch(f, () => (this.closed ? Promise.resolve(undefined) : this.recheckCredential(f.id)));
  }

  private onAbort(f: AbortFrame) {
    try {
      if (f.request_id !== undefined) {
        // Any running turn of the caller's, also one streaming to another socket or interface.
        this.ctx.stack.runner.abort(this.principal.userId, f.request_id, "aborted by the client");
        return;
      }
      const mine = [...this.turns].filter((t) => t.ref === f.ref);
      if (!mine.length) throw new ApiError(404, "not_found", `no running turn of this socket was started by a message frame with id ${JSON.stringify(f.ref)}`, { ref: f.ref });
      for (const t of mine) this.abortTurn(t, "aborted by the client");
    } catch (err) {
      this.outbox.send(errorFrame(toApiError(err), { id: f.id }));
    }
  }

  private abortTurn(t: SocketTurn, reason: string) {
    if (t.handle) t.handle.abort(reason);
    else t.abortReason ??= reason;
  }

  private async onMessage(f: MessageFrame) {
    // Registered before the first await, so an abort by ref that follows at once finds it.
    const t: SocketTurn = { ref: f.id };
    this.turns.add(t);
    try {
      const p = await this.recheckCredential(f.id);
      if (!p) return;
      try {
        this.ctx.limits.take(p);
      } catch (err) {
        this.ctx.metrics.rateLimited.inc({ interface: "ws" });
        throw err;
      }
      const conversationId = f.conversation_id ?? undefined;
      // An id that cannot exist is not found, as in the REST API.
      if (conversationId !== undefined && !UUID.test(conversationId)) throw ApiError.notFound("conversation", conversationId);
      const o = f.options ?? {};
      const sampling = o.temperature !== undefined || o.top_p !== undefined || o.seed !== undefined ? { temperature: o.temperature, topP: o.top_p, seed: o.seed } : undefined;
      if (this.closed) return; // nobody left to answer: start nothing
      let started: StartedTurn;
      try {
        started = await startTurn(this.ctx, p, "ws", {
          conversationId: conversationId?.toLowerCase(),
          content: f.content,
          options: { maxTokens: o.max_tokens, sampling, stop: o.stop, ifBusy: "fail" },
        });
      } catch (err) {
        if (err instanceof ApiError && err.code === "too_many_streams") this.ctx.metrics.rateLimited.inc({ interface: "ws" });
        throw err;
      }
      t.handle = started.handle;
      if (t.abortReason !== undefined) started.handle.abort(t.abortReason);
      await this.forward(t, started);
    } catch (err) {
      const e = toApiError(err);
      if (e.code === "internal_error") this.log.error("message frame failed", { error: (err as Error)?.stack ?? String(err) });
      this.outbox.send(errorFrame(e, { id: f.id }));
    } finally {
      this.turns.delete(t);
    }
  }

  /**
   * The principal again (the credential may have been revoked since the
   * upgrade). A refused credential is answered here and the socket closed
   * (undefined); a check that could not be made (the database, the identity
   * provider) throws, for the caller to answer its frame.
   */
  private async recheckCredential(id: FrameId | undefined): Promise<Principal | undefined> {
    let p: Principal;
    try {
      p = await this.ctx.auth.authenticate(this.credential);
    } catch (err) {
      const e = toApiError(err);
      // Only a refusal says the credential is gone. A failure to check it says
      // nothing about it: closing 1008 would tell the client its key was revoked,
      // and would cut off every client that sends a frame while it lasts.
      if (e.code !== "unauthorized" && e.code !== "forbidden") throw err;
      this.refuseCredential(e, id);
      return undefined;
    }
    if (!hasScope(p, "chat")) {
      this.refuseCredential(ApiError.forbidden("this credential lacks the 'chat' scope"), id);
      return undefined;
    }
    return p;
  }

  /**
   * The credential is gone: the socket's running turns end now, then it closes 1008. Not at the close
   * event: a peer that does not read (its socket paused, its buffer full) never answers the close, and ws
   * waits 30 s for it, while the turns of a revoked key would stream on.
   */
  private refuseCredential(e: ApiError, id: FrameId | undefined) {
    for (const t of this.turns) this.abortTurn(t, "the credential is no longer valid");
    this.outbox.send(errorFrame(e, { id }));
    this.ws.close(CLOSE.policy, "credential no longer valid");
  }

  private async forward(t: SocketTurn, started: StartedTurn) {
    const { handle, created } = started;
    const requestId = handle.requestId!;
    for await (const ev of handle.events(this.stop.signal) as AsyncGenerator<TurnEvent>) {
      if (this.closed) return;
      switch (ev.type) {
        case "accepted":
          break; // `start` waits for the route, which `started` carries
        case "started":
          this.outbox.send(startFrame(ev, created, t.ref));
          break;
        case "delta":
          this.outbox.token(requestId, ev.index, ev.text);
          break;
        case "tool":
          this.outbox.send({ type: "tool", request_id: requestId, tool_call_id: ev.toolCallId, name: ev.name, state: ev.state });
          break;
        case "done":
          this.outbox.send(endFrame(ev, t.ref));
          break;
        case "error": {
          const f = {
            type: "error" as const,
            request_id: requestId,
            code: TURN_ERROR_CODES[ev.errorType] ?? "internal_error",
            message: ev.message,
            details: { status: ev.status, error_type: ev.errorType, user_message_id: ev.userMessageId },
          };
          this.outbox.send(t.ref === undefined ? f : { ...f, id: t.ref });
          break;
        }
      }
    }
  }
}
