// How a route is described for the OpenAPI document, and the schemas that
// several routes share. Each router file declares its routes as RouteSpecs
// next to its handlers and mounts them with `mount`, so the method and path
// that Express serves are the ones the document shows; openapi.ts composes
// every router's specs. The zod schemas in a spec are the ones the handler
// validates with (requests) and builds its answer to (responses): the
// document cannot drift from the code without a test noticing
// (test/openapi.test.ts walks the app's route table; the REST tests parse
// real responses with the documented response schemas).
import type { RetrievedSource } from "@jota/control-plane";
import type { RequestHandler, Router } from "express";
import { z } from "zod";
import type { Scope } from "../auth/principal";
import { requireAdmin, requireScope } from "../auth/middleware";

export type HttpMethod = "get" | "post" | "put" | "patch" | "delete";

export interface ResponseSpec {
  description: string;
  /** The JSON body (absent: no body, e.g. 204). */
  schema?: z.ZodType;
  /** Default application/json; e.g. text/event-stream for SSE. */
  contentType?: string;
  /** Response headers worth knowing (name -> description). */
  headers?: Record<string, string>;
  /** The same response in other media types, by media type (e.g. text/event-stream when the request asks to stream). */
  alternatives?: Record<string, z.ZodType>;
}

export interface RouteSpec {
  method: HttpMethod;
  /** Express path relative to where the router is mounted, e.g. "/conversations/:id". */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  /**
   * "public": no credential; a scope: a credential holding it; "admin": an ADMIN user's key with the admin scope;
   * "credential": any valid credential, whatever its scopes (the route checks the rest, e.g. /keys refuses device tokens).
   */
  auth: "public" | Scope | "admin" | "credential";
  /** Path parameters; every ":name" of `path` must be here (schema default: string). */
  params?: Record<string, { description: string; schema?: z.ZodType }>;
  /** Query parameters, one property each. */
  query?: z.ZodObject;
  /** The request body's schema (for multipart, one property per form field). */
  body?: z.ZodType;
  /** The body's media type (default application/json; e.g. multipart/form-data for an upload). */
  bodyContentType?: string;
  /** A multipart/form-data body the route also takes, besides `body` (one property per form field; files as format binary). */
  formBody?: z.ZodType;
  /** Success responses by status. */
  responses: Record<number, ResponseSpec>;
  /** Error statuses this route answers besides those of every authenticated route (401, 403, 429). */
  errors?: number[];
}

/**
 * Registers `spec` on `r` with its own method and path, behind the scope or
 * role its `auth` names (so the document's security is the route's). The
 * credential itself is checked where the router is mounted (api/router.ts).
 */
export function mount(r: Router, spec: RouteSpec, ...handlers: RequestHandler[]): void {
  const guard = spec.auth === "public" || spec.auth === "credential" ? [] : spec.auth === "admin" ? [requireAdmin()] : [requireScope(spec.auth)];
  r[spec.method](spec.path, ...guard, ...handlers);
}

// ---- shared schemas -------------------------------------------------------

export const Id = z.uuid();
/** Timestamps are ISO 8601 in UTC. */
export const Timestamp = z.iso.datetime();
export const iso = (d: Date): string => d.toISOString();
export const isoOrNull = (d: Date | null | undefined): string | null => (d ? d.toISOString() : null);

export const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().meta({ description: "Stable machine-readable code, e.g. validation_error, not_found, conversation_busy." }),
      message: z.string(),
      details: z.record(z.string(), z.unknown()).meta({ description: "e.g. `field` for a validation error, `request_id` for a failed turn." }),
    }),
  })
  .meta({ id: "Error", description: "Jota's one error shape." });

/** ?limit=&cursor= of every list. */
export const PageQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(200).optional().meta({ description: "Items per page, 1..200 (default 50)." }),
    cursor: z.string().min(1).optional().meta({ description: "The next_cursor of the previous page." }),
  })
  .strict();

export function pageOf<T extends z.ZodType>(item: T) {
  return z.object({
    items: z.array(item),
    next_cursor: z.string().nullable().meta({ description: "Pass as ?cursor= for the next page; null on the last page." }),
  });
}

/**
 * The inference engine's limits on stop strings (engines/inference/service.cpp).
 * It refuses a request past them only once the turn has begun, with the user's
 * message already stored, so every interface checks them first.
 */
export const MAX_STOP_STRINGS = 16;
export const MAX_STOP_BYTES = 256;

// Bytes, as the engine counts them: a limit in characters lets 129 "é" (258
// bytes) through. The character limit is implied by the byte limit; it stays
// for the OpenAPI document (maxLength), which cannot say "bytes".
const StopString = z
  .string()
  .min(1)
  .max(MAX_STOP_BYTES, { error: `must be at most ${MAX_STOP_BYTES} bytes in UTF-8`, abort: true })
  .refine((s) => Buffer.byteLength(s, "utf8") <= MAX_STOP_BYTES, `must be at most ${MAX_STOP_BYTES} bytes in UTF-8`)
  .meta({ description: `1 to ${MAX_STOP_BYTES} bytes in UTF-8.` });

/** Up to `max` stop strings: an interface may allow fewer than the engine takes, never more. */
export function stopStrings(max: number) {
  if (max > MAX_STOP_STRINGS) throw new Error(`the engine takes at most ${MAX_STOP_STRINGS} stop strings, not ${max}`);
  return z.array(StopString).max(max);
}

export const RequestStatus = z.enum(["PENDING", "STREAMING", "PROCESSING", "COMPLETED", "FAILED", "ABORTED"]).meta({
  id: "RequestStatus",
  description: "PENDING -> STREAMING -> COMPLETED | FAILED | ABORTED; PROCESSING: the caller stopped waiting and the turn runs on in the background.",
});
export const FINAL_STATUSES: readonly string[] = ["COMPLETED", "FAILED", "ABORTED"];

export const Usage = z
  .object({
    prompt_tokens: z.number().int().nullable(),
    cached_tokens: z.number().int().nullable().meta({ description: "Prompt tokens reused from the conversation's KV cache." }),
    completion_tokens: z.number().int().nullable(),
  })
  .meta({ id: "Usage" });

export const Source = z
  .object({
    id: z.string().meta({ description: "The chunk's id in the vector store (a document's: <source>#<chunk>, and an upload's <source>#<chunk>@<version>)." }),
    source: z.string().meta({ description: "The document (or memory) it came from." }),
    kind: z.string().meta({ description: "document, note, ..." }),
    title: z.string().nullable(),
    chunk: z.number().int().nullable().meta({ description: "The chunk's position in its document." }),
    text: z.string().meta({ description: "The chunk as the prompt carried it; empty once the user erased its document or memory." }),
    score: z.number().meta({ description: "Cosine similarity to the user's message (1 = same direction)." }),
    erased: z.boolean().meta({ description: "The user has since erased the document or memory: its text is no longer kept." }),
  })
  .meta({ id: "Source", description: "Retrieved context the reply was given, best first." });

/** Retrieved sources as the API shows them (from a turn's event or the stored request's JSON). */
export function sourcesView(list: unknown): z.output<typeof Source>[] {
  if (!Array.isArray(list)) return [];
  return (list as RetrievedSource[]).map((s) => ({
    id: s.id,
    source: s.source,
    kind: s.kind,
    title: s.title ?? null,
    chunk: s.chunk ?? null,
    text: s.text,
    score: s.score,
    erased: (s as { erased?: boolean }).erased === true,
  }));
}

export const Timings = z
  .object({
    ttft_ms: z.number().nullable().meta({ description: "From the turn's start to the first token." }),
    total_ms: z.number().nullable(),
    queue_ms: z.number().nullable(),
    prefill_ms: z.number().nullable(),
    decode_ms: z.number().nullable(),
  })
  .meta({ id: "Timings" });

export const Route = z
  .object({
    route: z.enum(["chat", "command", "needs_context"]).nullable(),
    source: z.enum(["rule", "model", "default"]).nullable(),
    detail: z.string().nullable(),
  })
  .meta({ id: "RouteDecision", description: "What the intent router decided for the turn, and why." });
