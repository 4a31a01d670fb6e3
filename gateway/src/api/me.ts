// GET /api/v1/me: who the credential speaks for. A client needs its user id
// for the WebSocket path (/api/v1/ws/chat/{user_id}) and may want to know its
// scopes before it offers a feature.
import { Router } from "express";
import { z } from "zod";
import type { GatewayContext } from "../context";
import { principal } from "../auth/middleware";
import { ALL_SCOPES } from "../auth/principal";
import { Id, mount, type RouteSpec } from "./schemas";

export const MeView = z
  .object({
    user_id: Id,
    username: z.string(),
    role: z.enum(["ADMIN", "USER"]),
    via: z.enum(["api_key", "device", "oidc"]).meta({ description: "How the caller authenticated." }),
    credential_id: z.string().meta({ description: "The API key's or device token's id, or the OIDC subject." }),
    device_id: Id.nullable(),
    scopes: z.array(z.enum(ALL_SCOPES as [string, ...string[]])),
  })
  .meta({ id: "Me" });

export const meRoutes = {
  get: {
    method: "get",
    path: "/me",
    operationId: "getMe",
    summary: "The user and scopes of the calling credential",
    tags: ["keys"],
    auth: "credential",
    responses: { 200: { description: "The caller.", schema: MeView } },
  },
} satisfies Record<string, RouteSpec>;

export function meRouter(_ctx: GatewayContext): Router {
  const r = Router();
  mount(r, meRoutes.get, (_req, res) => {
    const p = principal(res);
    const view: z.infer<typeof MeView> = {
      user_id: p.userId,
      username: p.username,
      role: p.role,
      via: p.via,
      credential_id: p.credentialId,
      device_id: p.deviceId ?? null,
      scopes: [...p.scopes],
    };
    res.json(view);
  });
  return r;
}
