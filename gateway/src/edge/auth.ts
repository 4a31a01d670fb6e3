// Who is calling the edge service: the `authorization` metadata of the call,
// through the gateway's one Authenticator. A device token ("Bearer jota_d_…")
// is the documented credential; an API key works too (a development client, a
// test), since both name a user and carry the scopes the call needs.
import type { Metadata } from "@grpc/grpc-js";
import type { GatewayContext } from "../context";
import { ApiError } from "../http/errors";
import { hasScope, type Principal, type Scope } from "../auth/principal";

/** The caller's Principal, with every scope in `scopes`; ApiError 401 / 403 / 429 otherwise (before anything is stored). */
export async function authenticateCall(ctx: GatewayContext, metadata: Metadata, scopes: Scope[]): Promise<Principal> {
  const values = metadata.get("authorization");
  // Two credentials on one call are ambiguous: refused like a wrong one.
  if (values.length > 1) throw ApiError.unauthorized("send one `authorization` metadata entry, not several");
  const header = values[0];
  const p = await ctx.auth.authenticate(typeof header === "string" ? header : header?.toString("utf8"));
  for (const s of scopes) if (!hasScope(p, s)) throw ApiError.forbidden(`this credential lacks the '${s}' scope`);
  try {
    ctx.limits.take(p);
  } catch (err) {
    ctx.metrics.rateLimited.inc({ interface: "grpc" });
    throw err;
  }
  return p;
}
