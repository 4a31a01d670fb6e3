// Starting a chat turn from any interface (REST, WS, /v1, gRPC): the one path
// that checks the caller's stream limit, creates the conversation when the
// client asked for a new one, starts the turn on the runner (so it survives
// its caller), and records the turn's metrics when it ends.
import type { TurnHandle, TurnOptions } from "@jota/control-plane";
import type { GatewayContext } from "./context";
import type { Principal } from "./auth/principal";
import type { Interface } from "./metrics";

export interface StartTurn {
  /** An existing conversation of the caller's, or undefined for a new one. */
  conversationId?: string;
  content: string;
  /** Title of a new conversation (default: the start of the content). */
  title?: string;
  traceId?: string;
  options?: Omit<TurnOptions, "signal">;
  /**
   * Aborts the turn, also before it is accepted: a turn waiting for a busy
   * conversation (ifBusy "wait") has no handle its caller could abort yet,
   * and would otherwise hold its stream slot while it waits and run once the
   * conversation frees, after its caller has gone. The reason (a string, or
   * an Error's message) is the recorded one.
   */
  signal?: AbortSignal;
}

export interface StartedTurn {
  handle: TurnHandle;
  conversationId: string;
  /** True when this call created the conversation. */
  created: boolean;
}

/**
 * Starts a turn for `p`. Throws ApiError 429 (too many streams), NotFoundError
 * (a conversation that is not the caller's) or ConversationBusyError before
 * anything is stored; after `handle.accepted` every outcome is on the request.
 */
export async function startTurn(ctx: GatewayContext, p: Principal, iface: Interface, t: StartTurn): Promise<StartedTurn> {
  const releaseStream = ctx.limits.openStream(p);
  try {
    let conversationId = t.conversationId;
    let created = false;
    if (conversationId) await ctx.repos.conversations.get(p.userId, conversationId); // 404 before anything is stored
    else {
      const conv = await ctx.repos.conversations.create(p.userId, { title: t.title ?? titleFrom(t.content) });
      conversationId = conv.id;
      created = true;
    }
    const handle = ctx.stack.runner.start({ userId: p.userId, conversationId, content: t.content, traceId: t.traceId }, t.options);
    const signal = t.signal;
    if (signal) {
      const onAbort = () => handle.abort(typeof signal.reason === "string" ? signal.reason : (signal.reason as Error | undefined)?.message);
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener("abort", onAbort, { once: true });
        handle.result.then(
          () => signal.removeEventListener("abort", onAbort),
          () => signal.removeEventListener("abort", onAbort),
        );
      }
    }
    ctx.metrics.activeStreams.inc({ interface: iface });
    const t0 = performance.now();
    let firstToken: number | undefined;
    void (async () => {
      for await (const ev of handle.events()) if (ev.type === "delta") { firstToken = performance.now(); break; }
    })();
    handle.result.then(
      (r) => {
        ctx.metrics.turns.inc({ interface: iface, status: r.type === "done" ? r.status : "FAILED" });
        if (r.type === "done") {
          if (firstToken !== undefined) ctx.metrics.ttft.observe({ interface: iface }, (firstToken - t0) / 1000);
          const decodeMs = r.timings.decodeMs;
          if (decodeMs && r.usage.completionTokens > 1) ctx.metrics.tokensPerSecond.observe({ interface: iface }, (r.usage.completionTokens * 1000) / decodeMs);
        }
      },
      () => ctx.metrics.turns.inc({ interface: iface, status: "REFUSED" }),
    ).finally(() => {
      ctx.metrics.activeStreams.dec({ interface: iface });
      releaseStream();
    });
    await handle.accepted;
    return { handle, conversationId, created };
  } catch (err) {
    releaseStream();
    throw err;
  }
}

/** A new conversation's title: the first line of what started it, at most 60 characters. */
export function titleFrom(content: string): string {
  const line = content.trim().split("\n")[0] ?? "";
  return line.length > 60 ? `${line.slice(0, 57)}…` : line || "New conversation";
}
