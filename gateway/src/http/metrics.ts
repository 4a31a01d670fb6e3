// GET /metrics: Prometheus text format, for an admin credential (Prometheus
// sends it with `authorization: { credentials: … }` in its scrape config).
import { Router } from "express";
import type { GatewayContext } from "../context";
import { requireAdmin, requireAuth } from "../auth/middleware";

export function metricsRouter(ctx: GatewayContext): Router {
  const r = Router();
  r.get("/metrics", requireAuth(ctx.auth), requireAdmin(), async (_req, res, next) => {
    try {
      const text = await ctx.metrics.registry.metrics();
      res.type(ctx.metrics.registry.contentType).send(text);
    } catch (err) {
      next(err);
    }
  });
  return r;
}
