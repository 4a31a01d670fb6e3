// Express middleware: authenticate, then check scope / role. The Principal
// is put on res.locals.principal for the route.
import type { NextFunction, Request, RequestHandler, Response } from "express";
import { ApiError } from "../http/errors";
import type { Authenticator } from "./authenticator";
import { hasScope, type Principal, type Scope } from "./principal";

export function requireAuth(auth: Authenticator): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    auth.authenticate(req.headers.authorization).then((p) => {
      res.locals.principal = p;
      next();
    }, next);
  };
}

export function requireScope(scope: Scope): RequestHandler {
  return (_req, res, next) => {
    const p = principal(res);
    if (!hasScope(p, scope)) return next(ApiError.forbidden(`this credential lacks the '${scope}' scope`));
    next();
  };
}

export function requireAdmin(): RequestHandler {
  return (_req, res, next) => {
    const p = principal(res);
    if (p.role !== "ADMIN" || !hasScope(p, "admin")) return next(ApiError.forbidden("admin only: an ADMIN user's key with the 'admin' scope"));
    next();
  };
}

export function principal(res: Response): Principal {
  const p = res.locals.principal as Principal | undefined;
  if (!p) throw new Error("route mounted without requireAuth");
  return p;
}
