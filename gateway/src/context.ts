// What every route and service of the gateway is given: the Stack (database,
// engines, turn runner), authentication, limits and metrics. Built once per
// gateway by createContext.
import type { Config, Logger, Repositories } from "@jota/control-plane";
import { Authenticator } from "./auth/authenticator";
import { Limits } from "./auth/limits";
import { oidcFromConfig } from "./auth/oidc";
import { Metrics } from "./metrics";
import type { Stack } from "./stack";

export interface GatewayContext {
  stack: Stack;
  config: Config;
  log: Logger;
  repos: Repositories;
  auth: Authenticator;
  limits: Limits;
  metrics: Metrics;
}

export function createContext(stack: Stack): GatewayContext {
  const log = stack.log.child({ component: "gateway" });
  return {
    stack,
    config: stack.config,
    log,
    repos: stack.db.repos,
    auth: new Authenticator(stack.db.repos, log, oidcFromConfig(stack.config.gateway, stack.db.repos, log)),
    limits: new Limits(stack.config.gateway),
    metrics: new Metrics({ pool: stack.pool, runner: stack.runner }),
  };
}
