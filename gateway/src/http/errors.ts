// One error shape for every Jota route:
//   { "error": { "code": "...", "message": "...", "details": { ... } } }
// with the status that says what happened. Routes throw (or pass to next)
// an ApiError or any control-plane error; errorHandler maps the rest here, so
// a new route cannot invent another shape. The OpenAI-compatible routes
// (/v1) have their own shape (openai/errors.ts) built from the same ApiError.
import type { ErrorRequestHandler, Response } from "express";
import {
  ConflictError,
  ConversationBusyError,
  EngineUnavailableError,
  InvalidCursorError,
  InvalidTransitionError,
  NotFoundError,
  type Logger,
} from "@jota/control-plane";

export type ErrorCode =
  | "validation_error"
  | "invalid_json"
  | "invalid_encoding"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "conversation_busy"
  | "payload_too_large"
  | "unsupported_media_type"
  | "rate_limited"
  | "too_many_streams"
  | "engine_unavailable"
  | "jobs_unavailable"
  | "memory_unavailable"
  | "identity_provider_unavailable"
  | "engine_error"
  | "timeout"
  | "invalid_request"
  | "internal_error";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
    /** Extra response headers (e.g. Retry-After, WWW-Authenticate). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  static validation(field: string, message: string, extra: Record<string, unknown> = {}): ApiError {
    return new ApiError(400, "validation_error", `${field}: ${message}`, { field, ...extra });
  }
  static notFound(what: string, id: string): ApiError {
    return new ApiError(404, "not_found", `${what} ${id} not found`, { [what.replace(/ /g, "_")]: id });
  }
  static unauthorized(message: string): ApiError {
    return new ApiError(401, "unauthorized", message, {}, { "WWW-Authenticate": 'Bearer realm="jota"' });
  }
  static forbidden(message: string): ApiError {
    return new ApiError(403, "forbidden", message);
  }
}

/** Body-parser and similar errors carry `type` and `status` (http-errors). */
interface HttpLikeError {
  type?: string;
  status?: number;
  statusCode?: number;
  expose?: boolean;
  limit?: number;
  length?: number;
  /** Node's: zlib's Z_DATA_ERROR, Z_BUF_ERROR; brotli's ERR__ERROR_FORMAT_… */
  code?: unknown;
}

// body-parser passes a decompression stream's error on with status 400 and no
// `type`: only its zlib / brotli code says the body was not what its
// Content-Encoding claimed.
const DECOMPRESSION_CODE = /^(Z_|ERR__ERROR_|ERR_BROTLI|ERR_ZSTD)/;

/** Codes for client errors (4xx) that arrive with a status but no `type` we know. */
const CODE_BY_STATUS: Partial<Record<number, ErrorCode>> = {
  400: "invalid_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  409: "conflict",
  413: "payload_too_large",
  415: "unsupported_media_type",
  429: "rate_limited",
};

/** Any error, as the ApiError the client sees. Unknown errors become 500 without their message. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof NotFoundError) return new ApiError(404, "not_found", err.message, { [err.entity.replace(/ /g, "_")]: err.id });
  if (err instanceof ConversationBusyError)
    return new ApiError(409, "conversation_busy", err.message, { conversation_id: err.conversationId });
  if (err instanceof ConflictError) return new ApiError(409, "conflict", err.message);
  if (err instanceof InvalidTransitionError) return new ApiError(409, "conflict", err.message, { request_id: err.requestId, status: err.from });
  if (err instanceof InvalidCursorError) return ApiError.validation("cursor", err.message);
  if (err instanceof EngineUnavailableError) return new ApiError(503, "engine_unavailable", err.message, {}, { "Retry-After": "5" });
  const h = err as HttpLikeError;
  switch (h?.type) {
    case "entity.parse.failed":
      return new ApiError(400, "invalid_json", "the request body is not valid JSON");
    case "entity.too.large":
      return new ApiError(413, "payload_too_large", `the request body is larger than ${h.limit} bytes`, { limit: h.limit });
    case "encoding.unsupported":
    case "charset.unsupported":
      return new ApiError(415, "unsupported_media_type", "the request body's encoding or charset is not supported");
    case "request.aborted":
      return new ApiError(400, "validation_error", "the request body was not received whole");
  }
  const status = typeof h?.status === "number" ? h.status : typeof h?.statusCode === "number" ? h.statusCode : undefined;
  // Only http-errors' own (body-parser, raw-body: `expose` set) are the
  // client's fault: another library's 4xx (the Qdrant client's 401 for a bad
  // QDRANT_API_KEY) is the server's problem, a 500.
  if (status !== undefined && status >= 400 && status < 500 && h.expose === true) {
    if (typeof h.code === "string" && DECOMPRESSION_CODE.test(h.code))
      return new ApiError(400, "invalid_encoding", "the request body is not encoded as its Content-Encoding says", {
        reason: (err as Error).message,
      });
    // A client error from a library we did not map (http-errors marks those safe to show with `expose`).
    const message = err instanceof Error && err.message ? err.message : "the request cannot be served as sent";
    return new ApiError(status, CODE_BY_STATUS[status] ?? "invalid_request", message);
  }
  return new ApiError(500, "internal_error", "internal error");
}

export function sendError(res: Response, e: ApiError): void {
  if (res.headersSent) return;
  res.set(e.headers);
  res.status(e.status).json({ error: { code: e.code, message: e.message, details: e.details } });
}

/** The last middleware of Jota's own routes. */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const e = toApiError(err);
    if (e.status >= 500 && e.code === "internal_error")
      log.error("request failed", { method: req.method, path: req.path, error: stackWithCauses(err) });
    if (res.headersSent) {
      res.destroy(); // mid-stream: the client sees the stream cut, never a second response
      return;
    }
    sendError(res, e);
  };
}

/** An error's stack and those of its causes (an ApiError built for the client keeps the fault as its cause), undo errors included. */
function stackWithCauses(err: unknown): string {
  const parts: string[] = [];
  const stack = (e: unknown) => (e instanceof Error ? (e.stack ?? e.message) : String(e));
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 5; e = (e as { cause?: unknown })?.cause, depth++) {
    parts.push(stack(e));
    // MemoryAddNotUndoneError: why its undo failed, besides why the add did.
    const undo = (e as { undoError?: unknown })?.undoError;
    if (undo !== undefined) parts.push(`undo failed: ${stack(undo)}`);
  }
  return parts.join("\ncaused by: ");
}
