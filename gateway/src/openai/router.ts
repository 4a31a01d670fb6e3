// The OpenAI-compatible subset under /v1, for OpenAI SDKs and UIs unchanged:
//   GET  /v1/models, /v1/models/{id}   models.ts
//   POST /v1/chat/completions          chat.ts (streamed or not; a Jota chat turn)
//   POST /v1/embeddings                embeddings.ts
//   POST /v1/audio/transcriptions      audio.ts (multipart)
// Every path needs a bearer credential (API keys work as OpenAI SDKs send
// them: `Authorization: Bearer jota_k_…`), takes one request from the
// credential's rate bucket (counted as interface "openai" when refused),
// and needs the route's scope (chat, embeddings, audio). JSON bodies are
// limited to JOTA_MAX_BODY_BYTES and must be valid UTF-8. Every error
// below, authentication and unknown paths included, has OpenAI's shape
// (errors.ts), never Jota's.
import { Router } from "express";
import type { GatewayContext } from "../context";
import type { RouteSpec } from "../api/schemas";
import { principal, requireAuth } from "../auth/middleware";
import { jsonBody } from "../http/body";
import { audioRouter, audioRoutes } from "./audio";
import { chatRouter, chatRoutes } from "./chat";
import { embeddingRoutes, embeddingsRouter } from "./embeddings";
import { OpenAIError, openaiErrorHandler } from "./errors";
import { ModelCatalog, modelRoutes, modelsRouter } from "./models";

/** Every /v1 route, as mounted by the routers below (api/openapi.ts documents these). */
export const openaiRoutes: RouteSpec[] = [
  ...Object.values(modelRoutes),
  ...Object.values(chatRoutes),
  ...Object.values(embeddingRoutes),
  ...Object.values(audioRoutes),
];

/** A route's Express path as a RegExp of the paths it serves (":p" one segment, "*p" one or more). */
function pathPattern(path: string): RegExp {
  const src = path
    .split(/([:*][A-Za-z0-9_]+)/)
    .map((part) => (part.startsWith(":") ? "[^/]+" : part.startsWith("*") ? ".+" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
    .join("");
  return new RegExp(`^${src}/?$`);
}

/** Each path and the methods it answers, for 405s. */
const ALLOWED: [RegExp, string[]][] = openaiRoutes.map((spec) => [pathPattern(spec.path), [spec.method.toUpperCase()]]);

export function openaiRouter(ctx: GatewayContext): Router {
  const r = Router();
  const catalog = new ModelCatalog(ctx.stack.pool);
  r.use(requireAuth(ctx.auth));
  r.use((_req, res, next) => {
    try {
      ctx.limits.take(principal(res));
      next();
    } catch (err) {
      ctx.metrics.rateLimited.inc({ interface: "openai" });
      next(err);
    }
  });
  r.use(jsonBody(ctx.config.gateway.maxBodyBytes));
  r.use(modelsRouter(catalog));
  r.use(chatRouter(ctx, catalog));
  r.use(embeddingsRouter(ctx, catalog));
  r.use(audioRouter(ctx, catalog));
  r.use((req, _res, next) => {
    const allow = [...new Set(ALLOWED.filter(([re]) => re.test(req.path)).flatMap(([, m]) => m))].join(", ");
    if (allow)
      return next(new OpenAIError(405, "invalid_request_error", "method_not_allowed", `${req.method} is not allowed on /v1${req.path}: use ${allow}`, null, { Allow: allow }));
    next(new OpenAIError(404, "invalid_request_error", "unknown_url", `Unknown request URL: ${req.method} /v1${req.path}`));
  });
  r.use(openaiErrorHandler(ctx.log));
  return r;
}
