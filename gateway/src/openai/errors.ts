// OpenAI's error shape for everything under /v1, because OpenAI SDKs parse
// it (their APIError carries `type`, `code` and `param` from it):
//   { "error": { "message": "...", "type": "...", "param": "..." | null, "code": "..." | null } }
//
// Status -> type, as OpenAI uses them:
//   400, 404, 409, 413, 415  invalid_request_error
//   401                      authentication_error   (code invalid_api_key)
//   403                      permission_error       (code insufficient_scope)
//   429                      rate_limit_error       (code rate_limit_exceeded | too_many_streams)
//   500, 503                 server_error           (code internal_error | engine_error | engine_unavailable | ...)
// `code` says which problem (model_not_found, unknown_parameter,
// missing_required_parameter, unsupported_parameter, unsupported_value,
// invalid_type, invalid_value, invalid_json, invalid_encoding, payload_too_large,
// context_length_exceeded, conversation_busy, ...); `param` names the
// request field at fault (a dotted path: "messages.2.content"), or null.
//
// Jota's own errors (ApiError from auth, limits, body parsing; control-plane
// errors) are converted here, so no /v1 response ever has Jota's shape.
import type { ErrorRequestHandler, Response } from "express";
import { z } from "zod";
import type { Logger } from "@jota/control-plane";
import { ApiError, toApiError } from "../http/errors";

const ERROR_TYPES = ["invalid_request_error", "authentication_error", "permission_error", "rate_limit_error", "server_error"] as const;
export type OpenAIErrorType = (typeof ERROR_TYPES)[number];

/** The body of every /v1 error, as documented in the OpenAPI document. */
export const OpenAIErrorBody = z
  .object({
    error: z
      .object({
        message: z.string(),
        type: z.enum(ERROR_TYPES),
        param: z.string().nullable().meta({ description: "The request field at fault, as a dotted path (messages.2.content), or null." }),
        code: z.string().nullable().meta({ description: "Which problem: model_not_found, unknown_parameter, invalid_value, invalid_api_key, rate_limit_exceeded, engine_unavailable, ..." }),
      })
      .strict(),
  })
  .strict()
  .meta({ id: "OpenAIError", description: "OpenAI's error shape, which every /v1 error uses (OpenAI SDKs read type, code and param from it)." });

export class OpenAIError extends Error {
  constructor(
    readonly status: number,
    readonly type: OpenAIErrorType,
    readonly code: string | null,
    message: string,
    readonly param: string | null = null,
    /** Extra response headers (Retry-After, WWW-Authenticate, Allow). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "OpenAIError";
  }

  static invalid(param: string | null, code: string, message: string): OpenAIError {
    return new OpenAIError(400, "invalid_request_error", code, message, param);
  }
  /** A known OpenAI field or value Jota cannot honour: refused rather than silently ignored. */
  static unsupported(param: string, message: string, code: "unsupported_parameter" | "unsupported_value" = "unsupported_parameter"): OpenAIError {
    return new OpenAIError(400, "invalid_request_error", code, message, param);
  }
  static modelNotFound(model: string): OpenAIError {
    return new OpenAIError(404, "invalid_request_error", "model_not_found", `The model '${model}' does not exist; GET /v1/models lists the models served here`, "model");
  }

  body(): z.output<typeof OpenAIErrorBody> {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const TYPE_BY_STATUS: Record<number, OpenAIErrorType> = {
  401: "authentication_error",
  403: "permission_error",
  429: "rate_limit_error",
};

/** Jota's error codes as the codes OpenAI clients know, where one exists. */
const CODE: Partial<Record<ApiError["code"], string>> = {
  unauthorized: "invalid_api_key",
  forbidden: "insufficient_scope",
  rate_limited: "rate_limit_exceeded",
  validation_error: "invalid_value",
};

/** Any error, as the OpenAIError the client sees. Unknown errors become a 500 without their message. */
export function toOpenAIError(err: unknown): OpenAIError {
  if (err instanceof OpenAIError) return err;
  const e = toApiError(err);
  const type = TYPE_BY_STATUS[e.status] ?? (e.status >= 500 ? "server_error" : "invalid_request_error");
  const field = typeof e.details.field === "string" && e.details.field !== "(body)" ? e.details.field : null;
  return new OpenAIError(e.status, type, CODE[e.code] ?? e.code, e.message, field, e.headers);
}

export function sendOpenAIError(res: Response, e: OpenAIError): void {
  if (res.headersSent) return;
  res.set(e.headers);
  res.status(e.status).json(e.body());
}

/** The last middleware of the /v1 router. */
export function openaiErrorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const e = toOpenAIError(err);
    if (e.status >= 500 && e.code === "internal_error")
      log.error("request failed", { method: req.method, path: req.originalUrl, error: (err as Error)?.stack ?? String(err) });
    if (res.headersSent) {
      res.destroy(); // mid-stream: the client sees the stream cut, never a second response
      return;
    }
    sendOpenAIError(res, e);
  };
}
