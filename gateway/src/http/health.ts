// /health/live: the process answers (public).
// /health/ready: it can serve a turn: the database answers and at least one
//   engine of each configured kind serves (public; says only ok/unavailable).
// /health: every component (database, engines, Redis when the job queue is
//   up) with its status and latency, 200 or 503 (admin).
import { Router, type Request, type Response } from "express";
import { checkHealth } from "@jota/control-plane";
import type { GatewayContext } from "../context";
import { requireAdmin, requireAuth } from "../auth/middleware";

export interface ComponentHealth {
  name: string;
  kind: "database" | "inference" | "transcription" | "redis";
  status: "ok" | "down";
  detail: string;
  latencyMs: number;
}

const ms = (t0: number) => Math.round((performance.now() - t0) * 10) / 10;

async function components(ctx: GatewayContext): Promise<ComponentHealth[]> {
  const db = (async (): Promise<ComponentHealth> => {
    const t0 = performance.now();
    try {
      await ctx.stack.db.prisma.$queryRawUnsafe("SELECT 1");
      return { name: `database (${ctx.stack.db.backend})`, kind: "database", status: "ok", detail: "SELECT 1", latencyMs: ms(t0) };
    } catch (err) {
      return { name: `database (${ctx.stack.db.backend})`, kind: "database", status: "down", detail: (err as Error).message, latencyMs: ms(t0) };
    }
  })();
  const engines = ctx.stack.pool.status().map(async (s): Promise<ComponentHealth> => {
    const t0 = performance.now();
    const service = s.kind === "inference" ? "jota.v1.Inference" : "jota.v1.Transcription";
    const st = await checkHealth(s.address, service, 1500);
    return {
      name: `${s.kind}@${s.address}`,
      kind: s.kind,
      status: st === "SERVING" ? "ok" : "down",
      detail: s.kind === "inference" ? `${st}; slots ${s.slotsBusy}/${s.slotsTotal} busy, queue ${s.queueLength}` : st,
      latencyMs: ms(t0),
    };
  });
  const jobs = ctx.stack.jobs;
  const redis = jobs
    ? [
        (async (): Promise<ComponentHealth> => {
          const t0 = performance.now();
          try {
            await jobs.redis.connection.ping();
            return { name: `redis (${jobs.redis.location})`, kind: "redis", status: "ok", detail: "PING", latencyMs: ms(t0) };
          } catch (err) {
            return { name: `redis (${jobs.redis.location})`, kind: "redis", status: "down", detail: (err as Error).message, latencyMs: ms(t0) };
          }
        })(),
      ]
    : [];
  return Promise.all([db, ...engines, ...redis]);
}

/** A turn can be served: the database answers and one engine of each kind serves (Redis only carries background jobs). */
function ready(list: ComponentHealth[]): boolean {
  const kinds = new Set(list.filter((c) => c.kind !== "redis").map((c) => c.kind));
  return [...kinds].every((k) => list.some((c) => c.kind === k && c.status === "ok"));
}

/** Everything is well: ready, and Redis (when used) answers. */
function healthy(list: ComponentHealth[]): boolean {
  return ready(list) && list.every((c) => c.kind !== "redis" || c.status === "ok");
}

export function healthRouter(ctx: GatewayContext): Router {
  const r = Router();
  r.get("/health/live", (_req, res) => {
    res.json({ status: "ok" });
  });
  r.get("/health/ready", async (_req: Request, res: Response) => {
    const ok = ready(await components(ctx));
    res.status(ok ? 200 : 503).json({ status: ok ? "ok" : "unavailable" });
  });
  r.get("/health", requireAuth(ctx.auth), requireAdmin(), async (_req: Request, res: Response) => {
    const list = await components(ctx);
    const ok = healthy(list);
    res.status(ok ? 200 : 503).json({ status: ok ? "ok" : "unavailable", components: list });
  });
  return r;
}
