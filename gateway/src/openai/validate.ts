// Request validation for /v1, reported the way OpenAI reports it: the first
// problem as a 400 with `param` naming the field (its dotted path) and a
// `code` a client can branch on. Objects are strict: a field that is not
// OpenAI's is refused with its name ("unknown_parameter") rather than
// dropped, so a misspelt option never silently does nothing. Fields OpenAI
// defines but Jota does not support are declared in each route's schema and
// either ignored (when they cannot change the reply) or refused there.
import type { Request } from "express";
import { z } from "zod";
import { OpenAIError } from "./errors";

function pathOf(path: readonly PropertyKey[]): string | null {
  return path.length ? path.map(String).join(".") : null;
}

export function parse<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const r = schema.safeParse(value, { reportInput: true });
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const at = pathOf(issue.path);
  if (issue.code === "unrecognized_keys") {
    const param = pathOf([...issue.path, issue.keys[0]!])!;
    return fail(param, "unknown_parameter", `Unrecognized request argument supplied: ${param}`);
  }
  if (issue.code === "invalid_type" && issue.input === undefined && at)
    return fail(at, "missing_required_parameter", `Missing required parameter: '${at}'`);
  if (issue.code === "invalid_type" && !at) return fail(null, "invalid_type", "the request body must be a JSON object");
  return fail(at, issue.code === "invalid_type" ? "invalid_type" : "invalid_value", `${at ?? "body"}: ${issue.message}`);
}

function fail(param: string | null, code: string, message: string): never {
  throw OpenAIError.invalid(param, code, message);
}

/** The JSON body (parsed by jsonBody), checked; a body that is not JSON is a 415. */
export function jsonRequest<S extends z.ZodType>(req: Request, schema: S): z.infer<S> {
  if (!req.is("application/json"))
    throw new OpenAIError(415, "invalid_request_error", "unsupported_media_type", "send the body as application/json");
  return parse(schema, req.body);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(s: string): boolean {
  return UUID.test(s);
}
