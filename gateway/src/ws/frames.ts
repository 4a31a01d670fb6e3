// The WebSocket chat protocol's frames, in one place: the client frames'
// schemas (checked before anything else happens) and the server frames'
// shapes. docs/ws-protocol.md is the client authors' description of the same
// thing; a change here is a change there.
//
// Field names are snake_case, as in the REST API, and every frame is a JSON
// object with a `type`. A client may put an `id` on any frame; the server
// echoes it on the frames that answer it (pong, error, a turn's start, end
// and error, a job watch's job and error frames), never on token frames,
// which stay small.
import { sourcesView, stopStrings } from "../api/schemas";
import { z } from "zod";
import type { IngestJobStatus, TurnDoneEvent, TurnStartedEvent } from "@jota/control-plane";
import { jobView, type JobView } from "../api/documents";
import { ApiError } from "../http/errors";

/** The subprotocol a client offers (and the server echoes) to speak this protocol. */
export const SUBPROTOCOL = "jota.v1";

export const CLIENT_FRAME_TYPES = ["message", "abort", "ping", "watch_job", "unwatch_job"] as const;
export type ClientFrameType = (typeof CLIENT_FRAME_TYPES)[number];

export const SERVER_FRAME_TYPES = ["start", "token", "tool", "end", "error", "pong", "job"] as const;
export type ServerFrameType = (typeof SERVER_FRAME_TYPES)[number];

/** A client's correlation id: a short string or an integer, echoed as given. */
const frameId = z.union([z.string().min(1).max(128), z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER)], {
  error: "must be a string of 1 to 128 characters or an integer",
});
export type FrameId = z.infer<typeof frameId>;

export const messageOptions = z
  .object({
    max_tokens: z.number().int().min(1).max(131_072).optional(),
    temperature: z.number().min(0).max(2).optional(),
    top_p: z.number().gt(0).max(1).optional(),
    seed: z.number().int().min(0).max(0xffff_ffff).optional(),
    stop: stopStrings(8).optional(),
  })
  .strict();

export const messageFrame = z
  .object({
    type: z.literal("message"),
    id: frameId.optional(),
    /** Omitted or null: a new conversation. A string that is not one of the caller's conversations is not_found. */
    conversation_id: z.string().max(64).nullable().optional(),
    content: z
      .string()
      .min(1)
      .refine((s) => s.trim().length > 0, "must not be blank"),
    options: messageOptions.optional(),
  })
  .strict();

export const abortFrame = z
  .object({
    type: z.literal("abort"),
    id: frameId.optional(),
    /** A running turn of the caller's, by the request id of its `start` frame. */
    request_id: z.string().max(64).optional(),
    /** The turns this socket started for a `message` frame with this `id` (before `start` arrives, the only handle there is). */
    ref: frameId.optional(),
  })
  .strict()
  .refine((f) => (f.request_id === undefined) !== (f.ref === undefined), { message: "give exactly one of request_id or ref", path: ["request_id"] });

export const pingFrame = z.object({ type: z.literal("ping"), id: frameId.optional() }).strict();

/** An ingest job's id, as POST /api/v1/documents answered it (`job.id`). */
const jobId = z.string().min(1).max(256);

export const watchJobFrame = z
  .object({
    type: z.literal("watch_job"),
    id: frameId.optional(),
    /** One of the user's ingest jobs: answered at once with its status, then on every change until it ends. */
    job_id: jobId,
  })
  .strict();

export const unwatchJobFrame = z.object({ type: z.literal("unwatch_job"), id: frameId.optional(), job_id: jobId }).strict();

export type MessageFrame = z.infer<typeof messageFrame>;
export type AbortFrame = z.infer<typeof abortFrame>;
export type PingFrame = z.infer<typeof pingFrame>;
export type WatchJobFrame = z.infer<typeof watchJobFrame>;
export type UnwatchJobFrame = z.infer<typeof unwatchJobFrame>;
export type ClientFrame = MessageFrame | AbortFrame | PingFrame | WatchJobFrame | UnwatchJobFrame;

const SCHEMAS = { message: messageFrame, abort: abortFrame, ping: pingFrame, watch_job: watchJobFrame, unwatch_job: unwatchJobFrame } as const;

/**
 * A text frame's payload as a client frame, or an ApiError (invalid_json,
 * validation_error naming the field) carrying the frame's `id` when it could
 * be read, so the error can be correlated.
 */
export function parseClientFrame(text: string): ClientFrame {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ApiError(400, "invalid_json", "the frame is not valid JSON");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw ApiError.validation("frame", "a frame is a JSON object");
  const obj = raw as Record<string, unknown>;
  const id = frameId.safeParse(obj.id);
  const withId = (e: ApiError) => (id.success ? Object.assign(e, { frameId: id.data }) : e);
  const type = obj.type;
  if (typeof type !== "string" || !(CLIENT_FRAME_TYPES as readonly string[]).includes(type))
    throw withId(
      ApiError.validation("type", `must be one of ${CLIENT_FRAME_TYPES.join(", ")}`, {
        allowed: CLIENT_FRAME_TYPES,
        ...(type === undefined ? {} : { got: type }),
      }),
    );
  const r = SCHEMAS[type as ClientFrameType].safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  throw withId(ApiError.validation(fieldOf(issue), issue.code === "unrecognized_keys" ? "unknown field" : issue.message));
}

/** The JSON path of the problem; an unknown field is named itself ("options.temprature"), not its parent. */
function fieldOf(issue: z.core.$ZodIssue): string {
  const path = issue.path.map(String);
  if (issue.code === "unrecognized_keys" && issue.keys.length) path.push(issue.keys[0]!);
  return path.length ? path.join(".") : "frame";
}

/** The correlation id a parse error found on the frame, if any. */
export function frameIdOf(err: unknown): FrameId | undefined {
  return (err as { frameId?: FrameId })?.frameId;
}

// ---- Server frames ----------------------------------------------------------

export interface StartFrame {
  type: "start";
  id?: FrameId;
  request_id: string;
  conversation_id: string;
  /** True when this message created the conversation. */
  conversation_created: boolean;
  route: { route: string; source: string };
}

export interface TokenFrame {
  type: "token";
  request_id: string;
  /** Index (in the reply's tokens) of this frame's first token. */
  index: number;
  text: string;
  /** Engine deltas carried: 1, or more when a slow reader made the server coalesce them. */
  count: number;
}

/** Reserved: tools arrive in a later issue. */
export interface ToolFrame {
  type: "tool";
  request_id: string;
  tool_call_id: string;
  name: string;
  state: "started" | "finished" | "failed";
}

export interface EndFrame {
  type: "end";
  id?: FrameId;
  request_id: string;
  status: "COMPLETED" | "ABORTED";
  finish_reason: string;
  /** The stored reply (null when the turn ended before any text). */
  message_id: string | null;
  usage: { prompt_tokens: number; cached_tokens: number; completion_tokens: number };
  timings: { ttft_ms: number | null; total_ms: number; queue_ms: number | null; prefill_ms: number | null; decode_ms: number | null };
  /** Retrieved context the reply was given, best first (empty when none). */
  sources: ReturnType<typeof sourcesView>;
  /** Present when retrieval was wanted but could not be done: the reply has no context. */
  retrieval_error?: string;
}

export interface ErrorFrame {
  type: "error";
  id?: FrameId;
  request_id?: string;
  /** Present when the error is about a job watch (watch_job). */
  job_id?: string;
  code: string;
  message: string;
  details: Record<string, unknown>;
}

export interface PongFrame {
  type: "pong";
  id?: FrameId;
}

/**
 * An ingest job's status, for a watch_job: its first answer, then one per
 * change. `job` has the fields of GET /api/v1/jobs/{id} (the REST JobView).
 */
export interface JobFrame {
  type: "job";
  id?: FrameId;
  job_id: string;
  job: z.output<typeof JobView>;
}

export type ServerFrame = StartFrame | TokenFrame | ToolFrame | EndFrame | ErrorFrame | PongFrame | JobFrame;

const withFrameId = <T extends object>(f: T, id: FrameId | undefined): T => (id === undefined ? f : { ...f, id });

export function startFrame(ev: TurnStartedEvent, created: boolean, id: FrameId | undefined): StartFrame {
  return withFrameId(
    {
      type: "start" as const,
      request_id: ev.requestId,
      conversation_id: ev.conversationId,
      conversation_created: created,
      route: { route: ev.route.route, source: ev.route.source },
    },
    id,
  );
}

export function endFrame(ev: TurnDoneEvent, id: FrameId | undefined): EndFrame {
  const ms = (v: number | undefined) => (v === undefined ? null : Math.round(v * 1000) / 1000);
  return withFrameId(
    {
      type: "end" as const,
      request_id: ev.requestId,
      status: ev.status,
      finish_reason: ev.finishReason,
      message_id: ev.replyMessageId ?? null,
      usage: { prompt_tokens: ev.usage.promptTokens, cached_tokens: ev.usage.cachedTokens, completion_tokens: ev.usage.completionTokens },
      timings: {
        ttft_ms: ms(ev.timings.ttftMs),
        total_ms: ms(ev.timings.totalMs)!,
        queue_ms: ms(ev.timings.queueMs),
        prefill_ms: ms(ev.timings.prefillMs),
        decode_ms: ms(ev.timings.decodeMs),
      },
      sources: sourcesView(ev.sources),
      ...(ev.retrievalError ? { retrieval_error: ev.retrievalError } : {}),
    },
    id,
  );
}

export function errorFrame(e: ApiError, ids: { id?: FrameId; requestId?: string; jobId?: string } = {}): ErrorFrame {
  const f: ErrorFrame = { type: "error", code: e.code, message: e.message, details: e.details };
  if (ids.id !== undefined) f.id = ids.id;
  if (ids.requestId !== undefined) f.request_id = ids.requestId;
  if (ids.jobId !== undefined) f.job_id = ids.jobId;
  return f;
}

/** A job's status as the REST API shows it (api/documents.ts's JobView), in a job frame. */
export function jobFrame(j: IngestJobStatus, id: FrameId | undefined): JobFrame {
  return withFrameId(
    {
      type: "job" as const,
      job_id: j.id,
      job: jobView(j),
    },
    id,
  );
}

/** A failed turn's stored cause, as the error frame's code. */
export const TURN_ERROR_CODES: Record<string, string> = {
  ENGINE_UNAVAILABLE: "engine_unavailable",
  ENGINE_ERROR: "engine_error",
  TIMEOUT: "timeout",
  INVALID_REQUEST: "invalid_request",
  INTERNAL: "internal_error",
};
