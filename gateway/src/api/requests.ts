// Requests (turns) after the fact: their state and reply, their events as
// Server-Sent Events, and aborting one. A REST caller that got 202 from
// POST /chat comes here; so does a client that lost its connection.
//
//   GET  /requests                 the caller's requests, newest first (?conversation_id=)
//   GET  /requests/{id}            state, and the reply once it is final
//   GET  /requests/{id}/events     SSE: every event of the turn from its first, then live
//   POST /requests/{id}/abort      202 (the turn ends ABORTED, partial reply kept) | 409 (not running here)
//
// Events come from the turn runner while it holds the turn (running, or
// finished within its keep time): each has `id: <n>`, its sequence number,
// so a client reconnecting with Last-Event-ID gets only what it missed, and
// one that has the last event of a finished turn gets 204 No Content (which
// tells an EventSource to stop reconnecting). Once the runner has let the
// turn go, the database is the truth and the stream is one final event (done
// or error) built from it; that event carries the whole reply, so a client
// can always replace what it had with it. Its sequence number is not known
// any more, so its id is FINAL_EVENT_ID ("final"), the same on every replay:
// a reconnect carrying it gets 204; one carrying a number (or none) gets the
// final event, since nothing says whether the client had the live one.
import { Router, type Request as HttpRequest, type Response } from "express";
import type { Message, Request as DbRequest } from "@prisma/client";
import type { TurnEvent, TurnHandle } from "@jota/control-plane";
import { z } from "zod";
import type { GatewayContext } from "../context";
import { principal } from "../auth/middleware";
import { ApiError } from "../http/errors";
import { check, idParam, query } from "../http/validate";
import {
  FINAL_STATUSES,
  Id,
  PageQuery,
  RequestStatus,
  Route,
  Source,
  sourcesView,
  Timestamp,
  Timings,
  Usage,
  iso,
  isoOrNull,
  mount,
  pageOf,
  type RouteSpec,
} from "./schemas";

// ---- schemas ----------------------------------------------------------------

export const RequestView = z
  .object({
    request_id: Id,
    conversation_id: Id.nullable(),
    status: RequestStatus,
    route: Route,
    engine: z.string().nullable().meta({ description: "The engine (address) that served or last tried the turn." }),
    finish_reason: z.string().nullable().meta({ description: "stop | length | cancelled | error" }),
    error: z
      .object({
        type: z.enum(["ENGINE_UNAVAILABLE", "ENGINE_ERROR", "TIMEOUT", "INVALID_REQUEST", "INTERNAL", "VECTOR_STORE_UNAVAILABLE"]),
        message: z.string(),
      })
      .nullable()
      .meta({
        description:
          "Why a FAILED turn failed (or why an ABORTED one stopped); on a COMPLETED one, VECTOR_STORE_UNAVAILABLE says it was answered without the retrieved context it should have had.",
      }),
    sources: z.array(Source).meta({ description: "What retrieval put in the prompt, best first (empty when nothing was retrieved)." }),
    reply: z
      .object({ message_id: Id, content: z.string() })
      .nullable()
      .meta({ description: "The stored reply: the whole one when COMPLETED, the part generated so far when ABORTED, null otherwise." }),
    usage: Usage,
    timings: Timings,
    trace_id: z.string().nullable().meta({ description: "The X-Request-Id of the HTTP call that started the turn." }),
    created_at: Timestamp,
    started_at: Timestamp.nullable(),
    finished_at: Timestamp.nullable(),
  })
  .meta({ id: "Request", description: "A turn: its state and, once final, its reply, usage and timings." });
export type RequestView = z.infer<typeof RequestView>;

const RouteWire = z.object({ route: z.enum(["chat", "command", "needs_context"]), source: z.enum(["rule", "model", "default"]), detail: z.string() });

/** The events of a turn, as sent on the SSE stream (the `data:` of each; `event:` is its type). */
export const TurnEventWire = z
  .discriminatedUnion("type", [
    z.object({ type: z.literal("accepted"), request_id: Id, conversation_id: Id, user_message_id: Id }).meta({ description: "The request and the user's message are stored." }),
    z
      .object({
        type: z.literal("started"),
        request_id: Id,
        conversation_id: Id,
        user_message_id: Id,
        engine: z.string(),
        route: RouteWire,
        prompt_tokens: z.number().int(),
        cached_tokens: z.number().int(),
        queue_ms: z.number(),
        history_messages: z.number().int(),
        trimmed_messages: z.number().int(),
      })
      .meta({ description: "An engine took the turn." }),
    z.object({ type: z.literal("delta"), text: z.string(), index: z.number().int() }).meta({ description: "More of the reply; `index` is its first token's position." }),
    z
      .object({ type: z.literal("tool"), tool_call_id: z.string(), name: z.string(), state: z.enum(["started", "finished", "failed"]) })
      .meta({ description: "Reserved for tool calls." }),
    z
      .object({
        type: z.literal("done"),
        request_id: Id,
        status: z.enum(["COMPLETED", "ABORTED"]),
        finish_reason: z.string().nullable(),
        text: z.string().meta({ description: "The whole reply, as stored (the concatenation of the deltas)." }),
        reply_message_id: Id.nullable(),
        usage: Usage,
        timings: Timings,
        sources: z.array(Source),
      })
      .meta({ description: "The turn's last event when it was not FAILED." }),
    z
      .object({
        type: z.literal("error"),
        request_id: Id,
        status: z.literal("FAILED"),
        error_type: z.string(),
        message: z.string(),
        user_message_id: Id.nullable(),
      })
      .meta({ description: "The turn's last event when it FAILED." }),
  ])
  .meta({ id: "TurnEvent" });
export type TurnEventWire = z.infer<typeof TurnEventWire>;

const ListQuery = PageQuery.extend({
  conversation_id: Id.optional().meta({ description: "Only the requests of this conversation." }),
}).strict();

const Accepted = z.object({ request_id: Id, status: RequestStatus.meta({ description: "The state when the abort was asked for." }) });

// ---- views ------------------------------------------------------------------

const lower = <T extends string>(v: T | null): Lowercase<T> | null => (v ? (v.toLowerCase() as Lowercase<T>) : null);

/** A stored request (with the messages it carried) as the API shows it. */
export function requestView(r: DbRequest, messages: Message[]): RequestView {
  const reply = messages.find((m) => m.role === "ASSISTANT");
  return {
    request_id: r.id,
    conversation_id: r.conversationId,
    status: r.status,
    route: { route: lower(r.route), source: lower(r.routeSource), detail: r.routeDetail },
    engine: r.engine,
    finish_reason: r.finishReason,
    error: r.errorType || r.error ? { type: r.errorType ?? "INTERNAL", message: r.error ?? "" } : null,
    sources: sourcesView(r.sources),
    reply: reply ? { message_id: reply.id, content: reply.content } : null,
    usage: { prompt_tokens: r.promptTokens, cached_tokens: r.cachedTokens, completion_tokens: r.completionTokens },
    timings: { ttft_ms: r.ttftMs, total_ms: r.totalMs, queue_ms: r.queueMs, prefill_ms: r.prefillMs, decode_ms: r.decodeMs },
    trace_id: r.traceId,
    created_at: iso(r.createdAt),
    started_at: isoOrNull(r.startedAt),
    finished_at: isoOrNull(r.finishedAt),
  };
}

/** The user's request `id` as the API shows it (NotFoundError -> 404 when it is not theirs). */
export async function loadRequestView(ctx: GatewayContext, userId: string, id: string): Promise<RequestView> {
  const [r, messages] = await Promise.all([ctx.repos.requests.get(userId, id), ctx.repos.messages.ofRequest(userId, id)]);
  return requestView(r, messages);
}

const nil = <T>(v: T | undefined): T | null => (v === undefined ? null : v);

/** A runner event as it goes on the wire (snake_case, no undefined). */
export function wireEvent(ev: TurnEvent): TurnEventWire {
  switch (ev.type) {
    case "accepted":
      return { type: "accepted", request_id: ev.requestId, conversation_id: ev.conversationId, user_message_id: ev.userMessageId };
    case "started":
      return {
        type: "started",
        request_id: ev.requestId,
        conversation_id: ev.conversationId,
        user_message_id: ev.userMessageId,
        engine: ev.engine,
        route: { route: ev.route.route, source: ev.route.source, detail: ev.route.detail },
        prompt_tokens: ev.promptTokens,
        cached_tokens: ev.cachedTokens,
        queue_ms: ev.queueMs,
        history_messages: ev.historyMessages,
        trimmed_messages: ev.trimmedMessages,
      };
    case "delta":
      return { type: "delta", text: ev.text, index: ev.index };
    case "tool":
      return { type: "tool", tool_call_id: ev.toolCallId, name: ev.name, state: ev.state };
    case "done":
      return {
        type: "done",
        request_id: ev.requestId,
        status: ev.status,
        finish_reason: ev.finishReason,
        text: ev.text,
        reply_message_id: nil(ev.replyMessageId),
        usage: { prompt_tokens: ev.usage.promptTokens, cached_tokens: ev.usage.cachedTokens, completion_tokens: ev.usage.completionTokens },
        timings: {
          ttft_ms: nil(ev.timings.ttftMs),
          total_ms: ev.timings.totalMs,
          queue_ms: nil(ev.timings.queueMs),
          prefill_ms: nil(ev.timings.prefillMs),
          decode_ms: nil(ev.timings.decodeMs),
        },
        sources: sourcesView(ev.sources),
      };
    case "error":
      return { type: "error", request_id: ev.requestId, status: "FAILED", error_type: ev.errorType, message: ev.message, user_message_id: ev.userMessageId };
  }
}

/** The final event of a request the runner no longer holds, from what is stored. */
function finalEventFromDb(v: RequestView, userMessageId: string | null): TurnEventWire {
  if (v.status === "FAILED")
    return {
      type: "error",
      request_id: v.request_id,
      status: "FAILED",
      error_type: v.error?.type ?? "INTERNAL",
      message: v.error?.message ?? "",
      user_message_id: userMessageId,
    };
  return {
    type: "done",
    request_id: v.request_id,
    status: v.status as "COMPLETED" | "ABORTED",
    finish_reason: v.finish_reason,
    text: v.reply?.content ?? "",
    reply_message_id: v.reply?.message_id ?? null,
    usage: v.usage,
    timings: v.timings,
    sources: v.sources,
  };
}

/**
 * The id of the final event built from the database: not a sequence number (those are only known while the
 * runner holds the turn), but the same on every replay, so that a client reconnecting with it learns it has
 * the end (204) instead of getting the final event again and again.
 */
export const FINAL_EVENT_ID = "final";

export const links = (requestId: string) => ({
  self: `/api/v1/requests/${requestId}`,
  events: `/api/v1/requests/${requestId}/events`,
  abort: `/api/v1/requests/${requestId}/abort`,
});

// ---- routes -----------------------------------------------------------------

const idParamDoc = { id: { description: "The request id.", schema: Id } };

export const requestRoutes = {
  list: {
    method: "get",
    path: "/requests",
    operationId: "listRequests",
    summary: "List the caller's requests, newest first",
    tags: ["requests"],
    auth: "chat",
    query: ListQuery,
    responses: { 200: { description: "One page of requests.", schema: pageOf(RequestView) } },
  },
  get: {
    method: "get",
    path: "/requests/:id",
    operationId: "getRequest",
    summary: "A request's state, and its reply once final",
    description: "Poll this after POST /chat answered 202 until `status` is COMPLETED, FAILED or ABORTED.",
    tags: ["requests"],
    auth: "chat",
    params: idParamDoc,
    responses: { 200: { description: "The request.", schema: RequestView } },
  },
  events: {
    method: "get",
    path: "/requests/:id/events",
    operationId: "streamRequestEvents",
    summary: "The turn's events as Server-Sent Events",
    description:
      "Every event from the turn's first (accepted, started, delta…, done | error), then live ones until its end; `event:` is the type and `data:` the JSON below. " +
      "Each event has `id: <n>`: reconnect with `Last-Event-ID: <n>` to get only the later ones. " +
      `When the server no longer holds the turn in memory, the stream is one final event built from the database, with \`id: ${FINAL_EVENT_ID}\`. ` +
      `204 (no stream) when the turn has ended and \`Last-Event-ID\` is its last event's (its sequence number, or \`${FINAL_EVENT_ID}\`): there is nothing more, and an EventSource stops reconnecting. ` +
      "Stopping reading does not stop the turn (POST /requests/{id}/abort does). 409 when the turn is still running but not on this server.",
    tags: ["requests"],
    auth: "chat",
    params: idParamDoc,
    responses: {
      200: { description: "An SSE stream; each `data:` is one TurnEvent.", contentType: "text/event-stream", schema: TurnEventWire },
      204: { description: "The turn has ended and the client has its last event (`Last-Event-ID`): nothing more to send." },
    },
    errors: [400, 409],
  },
  abort: {
    method: "post",
    path: "/requests/:id/abort",
    operationId: "abortRequest",
    summary: "Abort a running turn",
    description: "The turn ends ABORTED with the part of the reply generated so far stored. 409 when it is already final (or not running on this server).",
    tags: ["requests"],
    auth: "chat",
    params: idParamDoc,
    responses: { 202: { description: "The abort is under way; poll the request for its final state.", schema: Accepted } },
    errors: [409],
  },
} satisfies Record<string, RouteSpec>;

const HEARTBEAT_MS = 15_000;

export function requestsRouter(ctx: GatewayContext): Router {
  const r = Router();

  mount(r, requestRoutes.list, async (req, res) => {
    const p = principal(res);
    const q = query(req, ListQuery);
    const page = await ctx.repos.requests.list(p.userId, { limit: q.limit, cursor: q.cursor, conversationId: q.conversation_id });
    const messages = await ctx.repos.messages.ofRequests(p.userId, page.items.map((x) => x.id));
    res.json({ items: page.items.map((x) => requestView(x, messages.filter((m) => m.requestId === x.id))), next_cursor: page.nextCursor ?? null });
  });

  mount(r, requestRoutes.get, async (req, res) => {
    const p = principal(res);
    res.json(await loadRequestView(ctx, p.userId, idParam(req, "id", "request")));
  });

  mount(r, requestRoutes.events, async (req, res) => {
    const p = principal(res);
    const id = idParam(req, "id", "request");
    const after = lastEventId(req);
    const handle = ctx.stack.runner.find(p.userId, id);
    // A turn that ended without its result event (it threw) is not streamed from memory: its log never says
    // how it ended, and a client that has all of it would be told nothing more (204). The database says.
    if (handle && (!handle.finished || handle.hasResult)) {
      // `final` comes only from a replay of a turn that had ended; for one running here it says nothing: all of it.
      if (handle.finished && (after === FINAL_EVENT_ID || after >= handle.eventCount - 1)) return res.status(204).end();
      return streamHandle(res, handle, after === FINAL_EVENT_ID ? -1 : after);
    }
    const [stored, messages] = await Promise.all([ctx.repos.requests.get(p.userId, id), ctx.repos.messages.ofRequest(p.userId, id)]);
    if (handle && !FINAL_STATUSES.includes(stored.status))
      // It ended here without a result, and its last write did not land either: polling would wait forever.
      throw new ApiError(500, "internal_error", `request ${id} ended without its outcome being recorded (it stays ${stored.status})`, {
        request_id: id,
        status: stored.status,
      });
    if (!FINAL_STATUSES.includes(stored.status))
      throw new ApiError(409, "conflict", `request ${id} is ${stored.status} but not running on this server; poll GET /api/v1/requests/${id}`, {
        request_id: id,
        status: stored.status,
      });
    // `final`: the client has this very event from an earlier replay. A number may be the live stream's last event
    // or an earlier one (which is not known any more): the final event again, which replaces what the client had.
    if (after === FINAL_EVENT_ID) return res.status(204).end();
    const view = requestView(stored, messages);
    openSse(res);
    await send(res, FINAL_EVENT_ID, finalEventFromDb(view, messages.find((m) => m.role === "USER")?.id ?? null));
    res.end();
  });

  mount(r, requestRoutes.abort, async (req, res) => {
    const p = principal(res);
    const id = idParam(req, "id", "request");
    const handle = ctx.stack.runner.find(p.userId, id);
    const stored = await ctx.repos.requests.get(p.userId, id); // 404 when it is not the caller's
    if (!handle || handle.finished || FINAL_STATUSES.includes(stored.status))
      throw new ApiError(
        409,
        "conflict",
        FINAL_STATUSES.includes(stored.status) ? `request ${id} is already ${stored.status}` : `request ${id} is not running on this server`,
        { request_id: id, status: stored.status },
      );
    handle.abort("aborted by the client (POST /requests/{id}/abort)");
    res.status(202).json({ request_id: id, status: stored.status });
  });
  return r;
}

/** Last-Event-ID: the id of the last event the client has (a sequence number, or FINAL_EVENT_ID); -1 for none. */
function lastEventId(req: HttpRequest): number | typeof FINAL_EVENT_ID {
  const h = req.headers["last-event-id"];
  if (h === undefined) return -1;
  return check(z.union([z.literal(FINAL_EVENT_ID), z.coerce.number().int().min(0)]), h, "last-event-id");
}

function openSse(res: Response) {
  res.status(200).set({
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    Connection: "keep-alive",
    // Reverse proxies (nginx) would otherwise buffer the stream.
    "X-Accel-Buffering": "no",
  });
  res.flushHeaders();
}

/** Writes one event, waiting while the socket's buffer is full (a slow reader never grows memory here). */
async function send(res: Response, id: number | typeof FINAL_EVENT_ID, ev: TurnEventWire): Promise<void> {
  if (res.writableEnded || res.destroyed) return;
  const frame = `id: ${id}\nevent: ${ev.type}\ndata: ${JSON.stringify(ev)}\n\n`;
  if (!res.write(frame)) await new Promise<void>((r) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      r();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

async function streamHandle(res: Response, handle: TurnHandle, after: number): Promise<void> {
  openSse(res);
  const ac = new AbortController();
  res.on("close", () => ac.abort());
  // A comment line now and then keeps idle proxies from closing a long prefill.
  const beat = setInterval(() => res.write(": keep-alive\n\n"), HEARTBEAT_MS);
  beat.unref();
  try {
    let i = 0;
    for await (const ev of handle.events(ac.signal)) {
      if (i > after) await send(res, i, wireEvent(ev));
      i++;
      if (ac.signal.aborted) break;
    }
  } finally {
    clearInterval(beat);
    res.end();
  }
}
