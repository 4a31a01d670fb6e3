// GET /api/v1/openapi.json: the OpenAPI 3.1 document of every HTTP route
// under /api/v1 and /v1, served without a credential.
//
// It is composed, not written: each router file exports its routes as
// RouteSpecs (api/schemas.ts) and mounts them with `mount`, and this file
// lists those exports under the prefix their router is mounted at. A route
// added without a spec here fails test/openapi.test.ts, which walks the
// Express app's route table and compares it with this document both ways.
// Schemas are converted with zod 4's z.toJSONSchema (JSON Schema 2020-12,
// which OpenAPI 3.1 uses as is); schemas given a `.meta({ id })` become
// components/schemas entries referenced by $ref.
import { Router } from "express";
import { z } from "zod";
import { chatRoutes } from "./chat";
import { conversationRoutes } from "./conversations";
import { requestRoutes } from "./requests";
import { documentRoutes } from "./documents";
import { memoryRoutes } from "./memories";
import { adminRoutes } from "./admin";
import { keyRoutes } from "./keys";
import { meRoutes } from "./me";
import { openaiRoutes } from "../openai/router";
import { OpenAIErrorBody } from "../openai/errors";
import { ErrorBody, mount, type RouteSpec } from "./schemas";

export const openapiRoutes = {
  document: {
    method: "get",
    path: "/openapi.json",
    operationId: "getOpenApiDocument",
    summary: "This document",
    tags: ["meta"],
    auth: "public",
    responses: { 200: { description: "The OpenAPI 3.1 document of Jota's HTTP API.", schema: z.record(z.string(), z.unknown()) } },
  },
} satisfies Record<string, RouteSpec>;

export interface RouteGroup {
  /** Where the router holding these routes is mounted in the app. */
  prefix: string;
  routes: RouteSpec[];
  /** The body of their error responses (default Jota's ErrorBody; /v1 answers OpenAI's shape). */
  errorBody?: z.ZodType;
  /** What an error status means in this group, where it says more than (or differs from) ERROR_TEXT. */
  errorText?: Record<number, string>;
}

/** /v1 errors carry OpenAI's `type`, `code` and `param` instead of Jota's `code` and `details`. */
const OPENAI_ERROR_TEXT: Record<number, string> = {
  400: "Invalid request (type invalid_request_error): `param` names the offending field as a dotted path, `code` the problem (unknown_parameter, missing_required_parameter, unsupported_parameter, unsupported_value, invalid_type, invalid_value, context_length_exceeded, ...).",
  401: "Missing, unknown, revoked or expired credential (type authentication_error, code invalid_api_key).",
  403: "The credential lacks the scope this route needs (type permission_error, code insufficient_scope).",
  404: "No such model (code model_not_found) or, for X-Jota-Conversation, no such conversation of the caller's (conversation_not_found).",
  409: "The conversation already has a turn running (code conversation_busy).",
  413: "The body is larger than JOTA_MAX_BODY_BYTES (an audio file: JOTA_MAX_AUDIO_BYTES) (code payload_too_large).",
  415: "The body is not of the documented media type (code unsupported_media_type).",
  429: "Rate limit (code rate_limit_exceeded) or concurrent-stream limit (too_many_streams) of the credential; see Retry-After.",
  500: "Internal or engine error (type server_error).",
  503: "No engine can serve now, or it did not finish in time (type server_error, code engine_unavailable | timeout | ...); see Retry-After.",
};

/** Every documented route. A new router's specs go here, under its mount prefix. */
export function routeGroups(): RouteGroup[] {
  return [
    {
      prefix: "/api/v1",
      routes: [
        ...Object.values(openapiRoutes),
        ...Object.values(chatRoutes),
        ...Object.values(conversationRoutes),
        ...Object.values(requestRoutes),
        ...Object.values(documentRoutes),
        ...Object.values(memoryRoutes),
        ...Object.values(meRoutes),
        ...Object.values(keyRoutes),
        ...Object.values(adminRoutes),
      ],
    },
    { prefix: "/v1", routes: openaiRoutes, errorBody: OpenAIErrorBody, errorText: OPENAI_ERROR_TEXT },
  ];
}

const ERROR_TEXT: Record<number, string> = {
  400: "Invalid request: `details.field` names the first offending field (JSON path).",
  401: "Missing, unknown, revoked or expired credential.",
  403: "The credential lacks the scope (or role) this route needs.",
  404: "No such object among the caller's (another user's object is not found either).",
  409: "Conflicts with the object's current state (`code` says which).",
  413: "The body is larger than JOTA_MAX_BODY_BYTES.",
  415: "The body is not of the documented media type.",
  429: "Rate limit or concurrent-stream limit of the credential; see Retry-After.",
  500: "Internal error.",
  502: "The engine failed during the turn.",
  503: "No engine can serve now; see Retry-After.",
  504: "The engine did not finish in time.",
};

export type JsonObject = Record<string, unknown>;

/** Express "/a/:id" (or the wildcard "/a/*id") -> OpenAPI "/a/{id}". */
export function openapiPath(expressPath: string): string {
  return expressPath.replace(/[:*]([A-Za-z0-9_]+)/g, "{$1}");
}

class Builder {
  readonly components: Record<string, unknown> = {};

  /** The JSON Schema of `schema`, its named parts moved to components/schemas. */
  schema(schema: z.ZodType, io: "input" | "output"): JsonObject {
    const js = z.toJSONSchema(schema, { target: "draft-2020-12", io, unrepresentable: "any" }) as JsonObject;
    delete js.$schema;
    const defs = (js.$defs ?? {}) as Record<string, JsonObject>;
    delete js.$defs;
    // Names first (a def may refer to another), then the defs with their refs rewritten.
    const names = new Map<string, string>();
    for (const [id, def] of Object.entries(defs)) names.set(id, this.nameFor(id, def, defs, io));
    for (const [id, def] of Object.entries(defs)) this.components[names.get(id)!] = rewriteRefs(def, names);
    return rewriteRefs(js, names);
  }

  /**
   * The component name of def `id`: its id, unless that name already holds a
   * different schema (a request-side variant of a response schema, e.g. with
   * defaults), which then gets an "Input"/"Output" suffix.
   */
  private nameFor(id: string, def: JsonObject, defs: Record<string, JsonObject>, io: "input" | "output"): string {
    const identity = new Map(Object.keys(defs).map((k) => [k, k]));
    const mine = JSON.stringify(rewriteRefs(def, identity));
    const existing = this.components[id];
    if (existing === undefined || JSON.stringify(existing) === mine) return id;
    return `${id}${io === "input" ? "Input" : "Output"}`;
  }
}

function rewriteRefs(v: JsonObject, names: Map<string, string>): JsonObject {
  const walk = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(walk);
    if (x && typeof x === "object") {
      const out: JsonObject = {};
      for (const [k, val] of Object.entries(x)) {
        if (k === "$ref" && typeof val === "string" && val.startsWith("#/$defs/")) {
          const id = val.slice("#/$defs/".length);
          out[k] = `#/components/schemas/${names.get(id) ?? id}`;
        } else out[k] = walk(val);
      }
      return out;
    }
    return x;
  };
  return walk(v) as JsonObject;
}

function operation(b: Builder, spec: RouteSpec, group: RouteGroup): JsonObject {
  const parameters: JsonObject[] = [];
  for (const [name, p] of Object.entries(spec.params ?? {}))
    parameters.push({ name, in: "path", required: true, description: p.description, schema: b.schema(p.schema ?? z.string(), "input") });
  for (const [name, field] of Object.entries(spec.query?.shape ?? {})) {
    const s = b.schema(field as z.ZodType, "input");
    const { description, ...rest } = s;
    parameters.push({ name, in: "query", required: !(field as z.ZodType).safeParse(undefined).success, ...(description ? { description } : {}), schema: rest });
  }

  const responses: JsonObject = {};
  for (const [status, r] of Object.entries(spec.responses)) {
    const media: [string, z.ZodType][] = [...(r.schema ? ([[r.contentType ?? "application/json", r.schema]] as [string, z.ZodType][]) : []), ...Object.entries(r.alternatives ?? {})];
    responses[status] = {
      description: r.description,
      ...(r.headers ? { headers: Object.fromEntries(Object.entries(r.headers).map(([h, d]) => [h, { description: d, schema: { type: "string" } }])) } : {}),
      ...(media.length ? { content: Object.fromEntries(media.map(([type, schema]) => [type, { schema: b.schema(schema, "output") }])) } : {}),
    };
  }
  const errors = new Set(spec.errors ?? []);
  if (spec.body || spec.query || spec.params) errors.add(400);
  if (spec.body) [413, 415].forEach((s) => errors.add(s));
  if (spec.params) errors.add(404);
  if (spec.auth !== "public") [401, 403, 429].forEach((s) => errors.add(s));
  const errorRef = b.schema(group.errorBody ?? ErrorBody, "output");
  for (const status of [...errors].sort((x, y) => x - y)) {
    const headers = status === 429 || status === 503 ? { headers: { "Retry-After": { description: "Seconds to wait.", schema: { type: "string" } } } } : {};
    const description = group.errorText?.[status] ?? ERROR_TEXT[status] ?? "Error.";
    responses[String(status)] = { description, ...headers, content: { "application/json": { schema: errorRef } } };
  }

  return {
    operationId: spec.operationId,
    summary: spec.summary,
    ...(spec.description ? { description: spec.description } : {}),
    tags: spec.tags,
    security: spec.auth === "public" ? [] : [{ bearer: [] }],
    ...(spec.auth !== "public" ? { "x-jota-auth": spec.auth } : {}),
    ...(parameters.length ? { parameters } : {}),
    ...(spec.body
      ? {
          requestBody: {
            // A body is optional where its schema takes an empty object: bodyOrEmpty reads a missing one as that
            // (test/openapi.test.ts sends every route no body to hold this true).
            required: !spec.body.safeParse({}).success,
            content: {
              [spec.bodyContentType ?? "application/json"]: { schema: b.schema(spec.body, "input") },
              ...(spec.formBody ? { "multipart/form-data": { schema: b.schema(spec.formBody, "input") } } : {}),
            },
          },
        }
      : {}),
    responses,
  };
}

/** The whole document. */
export function buildOpenApiDocument(groups: RouteGroup[] = routeGroups()): JsonObject {
  const b = new Builder();
  const paths: Record<string, JsonObject> = {};
  const tags = new Set<string>();
  for (const g of groups)
    for (const spec of g.routes) {
      const path = openapiPath(`${g.prefix}${spec.path}`);
      const item = (paths[path] ??= {});
      if (item[spec.method]) throw new Error(`two specs for ${spec.method.toUpperCase()} ${path}`);
      item[spec.method] = operation(b, spec, g);
      spec.tags.forEach((t) => tags.add(t));
    }
  return {
    openapi: "3.1.0",
    info: {
      title: "Jota",
      version: "1",
      description:
        "Jota's HTTP API: its own REST API under /api/v1 and the OpenAI-compatible subset under /v1. " +
        'Every error is `{ "error": { "code", "message", "details" } }` (the /v1 routes use OpenAI\'s error shape). ' +
        "JSON is snake_case; timestamps are ISO 8601 (UTC). " +
        "`x-jota-auth` on an operation says what its bearer credential needs: a scope (chat, audio, embeddings, memory), `admin` (an ADMIN user's key with the admin scope) or `credential` (any).",
    },
    tags: [...tags].map((name) => ({ name })),
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "An API key (jota_k_…) or a device token (jota_d_…)." } },
      schemas: b.components,
    },
    paths,
  };
}

export function openapiRouter(): Router {
  const r = Router();
  let doc: string | undefined;
  mount(r, openapiRoutes.document, (_req, res) => {
    doc ??= JSON.stringify(buildOpenApiDocument());
    res.type("application/json").send(doc);
  });
  return r;
}
