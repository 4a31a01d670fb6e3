// /health/live (the process answers), /health/ready (it can serve a turn),
// /health (every component with its status and latency; 200 or 503).
import { Router } from "express";
import { checkHealth, type ServingStatus } from "@jota/control-plane";

export interface EngineTarget {
  kind: "inference" | "transcription";
  address: string;
  service: string;
}

export interface ComponentHealth {
  name: string;
  status: "ok" | "down";
  detail: ServingStatus;
  latencyMs: number;
}

async function probe(t: EngineTarget): Promise<ComponentHealth> {
  const t0 = performance.now();
  const st = await checkHealth(t.address, t.service, 1500);
  return {
    name: `${t.kind}@${t.address}`,
    status: st === "SERVING" ? "ok" : "down",
    detail: st,
    latencyMs: Math.round((performance.now() - t0) * 10) / 10,
  };
}

export function healthRouter(engines: () => EngineTarget[]): Router {
  const r = Router();
  r.get("/health/live", (_req, res) => {
    res.json({ status: "ok" });
  });
  const deep = async (_req: unknown, res: import("express").Response) => {
    const targets = engines();
    const components = await Promise.all(targets.map(probe));
    // Ready = at least one engine of each configured kind is serving.
    const kinds = new Set(targets.map((t) => t.kind));
    const ready = [...kinds].every((k) => targets.some((t, i) => t.kind === k && components[i]!.status === "ok"));
    res.status(ready ? 200 : 503).json({ status: ready ? "ok" : "unavailable", components });
  };
  r.get("/health/ready", deep);
  r.get("/health", deep);
  return r;
}
