// Request validation with zod: one schema per body or query, checked at the
// edge of each route. The first problem is reported as a 400 naming the field
// (its JSON path, e.g. "messages.2.content"); unknown fields are refused, so a
// misspelt option is never silently ignored. The same schemas describe the
// routes in the OpenAPI document (api/openapi.ts).
import type { Request } from "express";
import { z } from "zod";
import { ApiError } from "./errors";

export function fieldOf(issue: z.core.$ZodIssue): string {
  // An unknown field's issue sits on its parent object: name the field itself.
  const path = issue.code === "unrecognized_keys" && issue.keys.length ? [...issue.path, issue.keys[0]!] : issue.path;
  return path.length ? path.map(String).join(".") : "(body)";
}

export function check<S extends z.ZodType>(schema: S, value: unknown, where = "body"): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const field = issue.path.length || issue.code === "unrecognized_keys" ? fieldOf(issue) : where;
  throw ApiError.validation(field, issue.message, { issues: r.error.issues.slice(0, 10).map((i) => ({ field: fieldOf(i), message: i.message })) });
}

/** The JSON body, checked. A request without a JSON content type is a 415. */
export function body<S extends z.ZodType>(req: Request, schema: S): z.infer<S> {
  if (!req.is("application/json"))
    throw new ApiError(415, "unsupported_media_type", "send the body as application/json", { content_type: req.headers["content-type"] ?? null });
  return check(schema, req.body, "body");
}

/** A POST that carries nothing at all (no body, no content type) is an empty object, not a 415. */
export function bodyOrEmpty<S extends z.ZodType>(req: Request, schema: S): z.infer<S> {
  const length = req.headers["content-length"];
  const none = req.headers["content-type"] === undefined && req.headers["transfer-encoding"] === undefined && (length === undefined || length === "0");
  return none ? schema.parse({}) : body(req, schema);
}

export function query<S extends z.ZodType>(req: Request, schema: S): z.infer<S> {
  return check(schema, req.query, "query");
}

/** A UUID path parameter, as a 404 when malformed (an id that cannot exist is not found, not invalid). */
export function idParam(req: Request, name: string, what: string): string {
  const v = req.params[name];
  if (typeof v !== "string" || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v)) throw ApiError.notFound(what, String(v));
  return v.toLowerCase();
}
