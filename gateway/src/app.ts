// The Express application: every HTTP route Jota serves, mounted in one place.
//   /health/live, /health/ready   public (liveness; readiness says only ok / unavailable)
//   /health, /metrics             admin credential (component details, Prometheus)
//   /api/v1/...                   Jota's own REST API (api/), OpenAPI at /api/v1/openapi.json
//   /v1/...                       the OpenAI-compatible subset (openai/)
// The WebSocket endpoint /api/v1/ws/chat/{user_id} is served on the same
// port by the upgrade handler (ws/server.ts; ws/chat.ts runs each socket),
// not by Express.
import express from "express";
import type { GatewayContext } from "./context";
import { errorHandler, ApiError } from "./http/errors";
import { healthRouter } from "./http/health";
import { observe } from "./http/observe";
import { metricsRouter } from "./http/metrics";
import { apiRouter } from "./api/router";
import { openaiRouter } from "./openai/router";

export function createApp(ctx: GatewayContext): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("trust proxy", false);
  app.use(observe(ctx.metrics));
  app.use(healthRouter(ctx));
  app.use(metricsRouter(ctx));
  app.use("/v1", openaiRouter(ctx));
  app.use("/api/v1", apiRouter(ctx));
  app.use((req, _res, next) => next(new ApiError(404, "not_found", `no route ${req.method} ${req.path}`, { method: req.method, path: req.path })));
  app.use(errorHandler(ctx.log));
  return app;
}
