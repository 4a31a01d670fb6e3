// Per-request bookkeeping: a request id (the client's X-Request-Id when it is
// sane, else a new one) echoed in the response and carried to the turn as its
// trace id, and the HTTP metrics by route pattern (never by raw path, which
// would make one series per conversation id).
//
// The route label is the full pattern of the route that matched, mount
// prefixes included ("/api/v1/conversations/:id"). It is taken when Express
// matches the route, not when the response ends: an error leaving a nested
// router (a 403 from a route's scope check, a 404 thrown by its handler)
// restores req.baseUrl on its way out to the app's error handler, so by the
// end of the response `req.baseUrl + req.route.path` would read "/chat"
// instead of "/api/v1/chat". Requests no route matched (unknown paths, and
// ones refused by a router's middleware before any route, e.g. a missing
// credential) are "unmatched".
import { randomUUID } from "node:crypto";
import type { Request, RequestHandler } from "express";
import type { Metrics } from "../metrics";

/** Watches the router set req.route, to label the request with the pattern that matched where it matched. */
function trackRoute(req: Request): () => string {
  let route: unknown;
  let label = "unmatched";
  Object.defineProperty(req, "route", {
    configurable: true,
    enumerable: true,
    get: () => route,
    set(v: { path?: unknown } | undefined) {
      route = v;
      if (typeof v?.path === "string") label = `${req.baseUrl}${v.path}`;
    },
  });
  return () => label;
}

export function observe(metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    const given = req.headers["x-request-id"];
    const id = typeof given === "string" && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? given : randomUUID();
    res.locals.requestId = id;
    res.setHeader("X-Request-Id", id);
    const routeOf = trackRoute(req);
    const end = metrics.httpDuration.startTimer();
    res.on("close", () => {
      const route = routeOf();
      end({ method: req.method, route });
      metrics.httpRequests.inc({ method: req.method, route, status: String(res.statusCode) });
    });
    next();
  };
}
