// A user's own API keys, without an admin:
//
//   POST   /keys        create a key with some of the caller's scopes; its secret is in this response only
//   GET    /keys        the caller's keys, newest first (?limit=&cursor=), never their secrets
//   DELETE /keys/{id}   revoke (idempotent; the row stays, listed as revoked)
//
// Any API key or OIDC token of the user may do this; a device token may not
// (a device talks and listens, it administers nothing). A key can only hand
// out scopes it holds, so creating keys never widens what its holder can do.
// Left out `scopes`, the new key gets the caller's scopes except `admin`:
// admin power is only ever given by asking for it, and never to a key of an
// OIDC user (their admin role lives in the identity provider; a key would
// outlive its removal).
//
// Trade-off: a stolen key can mint more keys that outlive its own
// revocation; the list shows every key (with its creation time and last
// use), so revoking a compromised user's keys means revoking all of them, or
// disabling the user (admin API).
//
// The views of keys, users and devices that the admin API shares live here.
import { Router } from "express";
import type { ApiKey, Device, DeviceToken, User } from "@prisma/client";
import { z } from "zod";
import type { GatewayContext } from "../context";
import { oidcManaged } from "../auth/authenticator";
import { principal } from "../auth/middleware";
import { ALL_SCOPES, type Scope } from "../auth/principal";
import { ApiError } from "../http/errors";
import { body, idParam, query } from "../http/validate";
import { Id, PageQuery, Timestamp, iso, isoOrNull, mount, pageOf, type RouteSpec } from "./schemas";

// ---- request schemas ----------------------------------------------------------

/** A name people read in lists: trimmed, 1..100 characters, no control characters. */
export const Name = z
  .string()
  .trim()
  .min(1, "must not be empty")
  .max(100)
  .regex(/^[^\p{Cc}]*$/u, "must not contain control characters");

export const Scopes = z
  .array(z.enum(ALL_SCOPES as [Scope, ...Scope[]]))
  .min(1, "a key needs at least one scope")
  .refine((s) => new Set(s).size === s.length, "lists a scope twice")
  .meta({ description: `Some of ${ALL_SCOPES.join(", ")}.` });

/** An expiry in the future (an offset is required, so the instant is unambiguous). */
export const ExpiresAt = z.iso
  .datetime({ offset: true })
  .refine((s) => new Date(s).getTime() > Date.now(), "is not in the future")
  .meta({ description: "When the credential stops working (ISO 8601 with offset); absent: never." });

export const NewKeyBody = z.object({ name: Name, scopes: Scopes.optional(), expires_at: ExpiresAt.optional() }).strict();

// ---- views --------------------------------------------------------------------

const CredentialStatus = z.enum(["active", "revoked", "expired"]);
const status = (c: { revokedAt: Date | null; expiresAt: Date | null }): z.infer<typeof CredentialStatus> =>
  c.revokedAt ? "revoked" : c.expiresAt && c.expiresAt <= new Date() ? "expired" : "active";

export const ApiKeyView = z
  .object({
    id: Id,
    user_id: Id,
    name: z.string(),
    prefix: z.string().meta({ description: "The key's public start (jota_k_…), to tell keys apart; the secret is never shown again." }),
    scopes: z.array(z.string()),
    status: CredentialStatus,
    created_at: Timestamp,
    last_used_at: Timestamp.nullable(),
    expires_at: Timestamp.nullable(),
    revoked_at: Timestamp.nullable(),
  })
  .meta({ id: "ApiKey" });

export const NewApiKeyView = ApiKeyView.extend({
  secret: z.string().meta({ description: "The whole key, for `Authorization: Bearer …`. Shown in this response only: only an HMAC of it is stored." }),
}).meta({ id: "NewApiKey" });

export function apiKeyView(k: ApiKey): z.infer<typeof ApiKeyView> {
  return {
    id: k.id,
    user_id: k.userId,
    name: k.name,
    prefix: k.prefix,
    scopes: k.scopes,
    status: status(k),
    created_at: iso(k.createdAt),
    last_used_at: isoOrNull(k.lastUsedAt),
    expires_at: isoOrNull(k.expiresAt),
    revoked_at: isoOrNull(k.revokedAt),
  };
}

export const UserView = z
  .object({
    id: Id,
    username: z.string(),
    display_name: z.string().nullable(),
    role: z.enum(["USER", "ADMIN"]),
    disabled: z.boolean(),
    disabled_at: Timestamp.nullable(),
    created_at: Timestamp,
  })
  .meta({ id: "User" });

export function userView(u: User): z.infer<typeof UserView> {
  return {
    id: u.id,
    username: u.username,
    display_name: u.displayName,
    role: u.role,
    disabled: u.disabledAt !== null,
    disabled_at: isoOrNull(u.disabledAt),
    created_at: iso(u.createdAt),
  };
}

export const DeviceView = z
  .object({
    id: Id,
    user_id: Id,
    name: z.string(),
    kind: z.string(),
    revoked: z.boolean(),
    last_seen_at: Timestamp.nullable(),
    revoked_at: Timestamp.nullable(),
    created_at: Timestamp,
  })
  .meta({ id: "Device" });

export function deviceView(d: Device): z.infer<typeof DeviceView> {
  return {
    id: d.id,
    user_id: d.userId,
    name: d.name,
    kind: d.kind,
    revoked: d.revokedAt !== null,
    last_seen_at: isoOrNull(d.lastSeenAt),
    revoked_at: isoOrNull(d.revokedAt),
    created_at: iso(d.createdAt),
  };
}

export const DeviceTokenView = z
  .object({
    id: Id,
    device_id: Id,
    prefix: z.string().meta({ description: "The token's public start (jota_d_…)." }),
    status: CredentialStatus,
    created_at: Timestamp,
    last_used_at: Timestamp.nullable(),
    expires_at: Timestamp.nullable(),
    revoked_at: Timestamp.nullable(),
  })
  .meta({ id: "DeviceToken" });

export const NewDeviceTokenView = DeviceTokenView.extend({
  secret: z.string().meta({ description: "The whole token, for the device's `authorization: Bearer …`. Shown in this response only." }),
}).meta({ id: "NewDeviceToken" });

export function deviceTokenView(t: DeviceToken): z.infer<typeof DeviceTokenView> {
  return {
    id: t.id,
    device_id: t.deviceId,
    prefix: t.prefix,
    status: status(t),
    created_at: iso(t.createdAt),
    last_used_at: isoOrNull(t.lastUsedAt),
    expires_at: isoOrNull(t.expiresAt),
    revoked_at: isoOrNull(t.revokedAt),
  };
}

// ---- routes -------------------------------------------------------------------

const keyIdDoc = { id: { description: "The API key's id.", schema: Id } };

export const keyRoutes = {
  create: {
    method: "post",
    path: "/keys",
    operationId: "createOwnApiKey",
    summary: "Create an API key for yourself",
    description:
      "`scopes` must be among the calling credential's (403 otherwise); without it, the caller's scopes except `admin`. " +
      "Not with a device token (403). The secret is in this response only.",
    tags: ["keys"],
    auth: "credential",
    body: NewKeyBody,
    responses: { 201: { description: "The key, with its secret.", schema: NewApiKeyView, headers: { Location: "The key's URL." } } },
  },
  list: {
    method: "get",
    path: "/keys",
    operationId: "listOwnApiKeys",
    summary: "Your API keys, newest first (revoked and expired ones included, secrets never)",
    tags: ["keys"],
    auth: "credential",
    query: PageQuery,
    responses: { 200: { description: "One page of keys.", schema: pageOf(ApiKeyView) } },
  },
  revoke: {
    method: "delete",
    path: "/keys/:id",
    operationId: "revokeOwnApiKey",
    summary: "Revoke one of your API keys",
    description: "Idempotent: a revoked key keeps its first revocation time. Revoking the key you call with is allowed.",
    tags: ["keys"],
    auth: "credential",
    params: keyIdDoc,
    responses: { 200: { description: "The revoked key.", schema: ApiKeyView } },
  },
} satisfies Record<string, RouteSpec>;

export function keysRouter(ctx: GatewayContext): Router {
  const r = Router();
  const notDevice = (res: Parameters<typeof principal>[0]) => {
    const p = principal(res);
    if (p.via === "device") throw ApiError.forbidden("a device token cannot manage API keys: use an API key of the user");
    return p;
  };

  mount(r, keyRoutes.create, async (req, res) => {
    const p = notDevice(res);
    const b = body(req, NewKeyBody);
    const scopes = b.scopes ?? p.scopes.filter((s) => s !== "admin");
    if (scopes.includes("admin") && oidcManaged(p.username))
      throw new ApiError(403, "forbidden", "an OIDC user's keys cannot hold 'admin': the identity provider grants that role token by token, and a key would outlive it", {
        field: "scopes",
      });
    const missing = scopes.filter((s) => !p.scopes.includes(s));
    if (missing.length)
      throw new ApiError(403, "forbidden", `a key can only be given scopes its creator holds; this credential lacks ${missing.join(", ")}`, {
        field: "scopes",
        missing,
      });
    if (scopes.length === 0) throw ApiError.validation("scopes", "name the scopes: the calling credential holds none that is given by default");
    const { key, secret } = await ctx.repos.apiKeys.create(p.userId, {
      name: b.name,
      scopes: [...scopes],
      expiresAt: b.expires_at ? new Date(b.expires_at) : undefined,
    });
    ctx.log.info("api key created", { userId: p.userId, keyId: key.id, by: p.credentialId, scopes });
    res.status(201).location(`/api/v1/keys/${key.id}`).json({ ...apiKeyView(key), secret });
  });

  mount(r, keyRoutes.list, async (req, res) => {
    const p = notDevice(res);
    const q = query(req, PageQuery);
    const page = await ctx.repos.apiKeys.list(p.userId, { limit: q.limit, cursor: q.cursor });
    res.json({ items: page.items.map(apiKeyView), next_cursor: page.nextCursor ?? null });
  });

  mount(r, keyRoutes.revoke, async (req, res) => {
    const p = notDevice(res);
    const key = await ctx.repos.apiKeys.revoke(p.userId, idParam(req, "id", "api key"));
    ctx.log.info("api key revoked", { userId: p.userId, keyId: key.id, by: p.credentialId });
    res.json(apiKeyView(key));
  });
  return r;
}
