// Jota's own REST API under /api/v1. Every route but /openapi.json needs a credential
// (requireAuth) and takes one request from its rate bucket; bodies are JSON
// within JOTA_MAX_BODY_BYTES. Each concern is its own router file.
import { Router } from "express";
import type { GatewayContext } from "../context";
import { requireAuth } from "../auth/middleware";
import { principal } from "../auth/middleware";
import { jsonBody } from "../http/body";
import { chatRouter } from "./chat";
import { conversationsRouter } from "./conversations";
import { documentsRouter } from "./documents";
import { memoriesRouter } from "./memories";
import { openapiRouter } from "./openapi";
import { requestsRouter } from "./requests";
import { adminRouter } from "./admin";
import { keysRouter } from "./keys";
import { meRouter } from "./me";

export function apiRouter(ctx: GatewayContext): Router {
  const r = Router();
  r.use(openapiRouter()); // public: the document describes how to authenticate
  const authed = Router();
  authed.use(requireAuth(ctx.auth));
  authed.use((_req, res, next) => {
    try {
      ctx.limits.take(principal(res));
      next();
    } catch (err) {
      ctx.metrics.rateLimited.inc({ interface: "rest" });
      next(err);
    }
  });
  authed.use(jsonBody(ctx.config.gateway.maxBodyBytes));
  // Sub-routers (each file mounts its own paths):
  authed.use(chatRouter(ctx));
  authed.use(conversationsRouter(ctx));
  authed.use(requestsRouter(ctx));
  authed.use(documentsRouter(ctx));
  authed.use(memoriesRouter(ctx));
  authed.use(meRouter(ctx), keysRouter(ctx), adminRouter(ctx));
  r.use(authed);
  return r;
}
