// The Express application: every HTTP route Jota serves, mounted in one place.
import express from "express";
import { healthRouter, type EngineTarget } from "./http/health";

export interface AppDeps {
  engines: () => EngineTarget[];
}

export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.use(healthRouter(deps.engines));
  app.use((_req, res) => {
    res.status(404).json({ error: { code: "not_found", message: "no such route", details: {} } });
  });
  return app;
}
