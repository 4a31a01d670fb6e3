// The admin API: users, their API keys and their devices. Every route needs
// an ADMIN user's credential holding the `admin` scope (403 otherwise).
//
//   POST   /admin/users                                       create a user
//   GET    /admin/users                                       list, oldest first (?limit=&cursor=)
//   GET    /admin/users/{id}                                  one
//   POST   /admin/users/{id}/disable | /enable                its keys and device tokens stop (resume) working at once
//   POST   /admin/users/{id}/keys                             create a key; the secret is in this response only
//   GET    /admin/users/{id}/keys                             list (never secrets)
//   DELETE /admin/users/{id}/keys/{key_id}                    revoke
//   POST   /admin/users/{id}/devices                          register a device
//   GET    /admin/users/{id}/devices                          list
//   GET    /admin/users/{id}/devices/{device_id}              one
//   DELETE /admin/users/{id}/devices/{device_id}              revoke the device and all its tokens
//   POST   /admin/users/{id}/devices/{device_id}/tokens       issue a token; the secret is in this response only
//   GET    /admin/users/{id}/devices/{device_id}/tokens       list (never secrets)
//   DELETE /admin/users/{id}/devices/{device_id}/tokens/{token_id}  revoke one token
//
// Objects are addressed under their user: a key, device or token id that is
// not that user's is a 404, like an id that does not exist. Revocations are
// idempotent and keep the rows (lists show them as revoked). Nothing is
// deleted: a user is disabled, not removed, so their history stays whole.
//
// Two refusals keep an installation manageable: an admin cannot disable
// themselves (409: the last admin could lock everyone out), and the `admin`
// scope is only given to keys of ADMIN users (400: on a USER's key it would
// mean nothing, and would start to mean something if the user were promoted).
import { Router, type Request } from "express";
import type { User } from "@prisma/client";
import { z } from "zod";
import type { GatewayContext } from "../context";
import { oidcManaged } from "../auth/authenticator";
import { principal } from "../auth/middleware";
import { DEFAULT_SCOPES } from "../auth/principal";
import { ApiError } from "../http/errors";
import { body, bodyOrEmpty, idParam, query } from "../http/validate";
import {
  ApiKeyView,
  DeviceTokenView,
  DeviceView,
  ExpiresAt,
  Name,
  NewApiKeyView,
  NewDeviceTokenView,
  NewKeyBody,
  UserView,
  apiKeyView,
  deviceTokenView,
  deviceView,
  userView,
} from "./keys";
import { Id, PageQuery, mount, pageOf, type RouteSpec } from "./schemas";

// ---- request schemas ----------------------------------------------------------

/**
 * Local usernames: lowercase, so "Ana" and "ana" cannot be two people, and
 * without ':', which is kept for identities from elsewhere ("oidc:<sub>").
 */
export const Username = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "use 1..64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit");

const NewUserBody = z
  .object({
    username: Username,
    display_name: Name.optional(),
    role: z.enum(["USER", "ADMIN"]).optional().meta({ description: "Default USER." }),
  })
  .strict();

export const DeviceKind = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, "use 1..32 lowercase letters, digits, '_' or '-'");

const NewDeviceBody = z
  .object({
    name: Name.meta({ description: "Unique among the user's devices." }),
    kind: DeviceKind.optional().meta({ description: 'Free-form, e.g. "satellite" (default), "phone".' }),
  })
  .strict();

const NewTokenBody = z.object({ expires_at: ExpiresAt.optional() }).strict();

// ---- routes -------------------------------------------------------------------

const userParam = { id: { description: "The user's id.", schema: Id } };
const deviceParams = { ...userParam, device_id: { description: "The device's id.", schema: Id } };
const TokenList = z.object({ items: z.array(DeviceTokenView) });

export const adminRoutes = {
  createUser: {
    method: "post",
    path: "/admin/users",
    operationId: "adminCreateUser",
    summary: "Create a user",
    tags: ["admin"],
    auth: "admin",
    body: NewUserBody,
    responses: { 201: { description: "The new user (without a key: create one next).", schema: UserView, headers: { Location: "The user's URL." } } },
    errors: [409],
  },
  listUsers: {
    method: "get",
    path: "/admin/users",
    operationId: "adminListUsers",
    summary: "List users, oldest first",
    tags: ["admin"],
    auth: "admin",
    query: PageQuery,
    responses: { 200: { description: "One page of users.", schema: pageOf(UserView) } },
  },
  getUser: {
    method: "get",
    path: "/admin/users/:id",
    operationId: "adminGetUser",
    summary: "One user",
    tags: ["admin"],
    auth: "admin",
    params: userParam,
    responses: { 200: { description: "The user.", schema: UserView } },
  },
  disableUser: {
    method: "post",
    path: "/admin/users/:id/disable",
    operationId: "adminDisableUser",
    summary: "Disable a user: their keys, device tokens and OIDC logins stop working at once",
    description: "Idempotent. 409 for your own user.",
    tags: ["admin"],
    auth: "admin",
    params: userParam,
    responses: { 200: { description: "The disabled user.", schema: UserView } },
    errors: [409],
  },
  enableUser: {
    method: "post",
    path: "/admin/users/:id/enable",
    operationId: "adminEnableUser",
    summary: "Enable a disabled user: their unrevoked credentials work again",
    tags: ["admin"],
    auth: "admin",
    params: userParam,
    responses: { 200: { description: "The enabled user.", schema: UserView } },
  },
  createKey: {
    method: "post",
    path: "/admin/users/:id/keys",
    operationId: "adminCreateApiKey",
    summary: "Create an API key for a user",
    description: `Default scopes ${DEFAULT_SCOPES.join(", ")}; \`admin\` only for an ADMIN user who is not an OIDC user (\`oidc:…\`: their admin role comes with each token). The secret is in this response only.`,
    tags: ["admin"],
    auth: "admin",
    params: userParam,
    body: NewKeyBody,
    responses: { 201: { description: "The key, with its secret.", schema: NewApiKeyView } },
  },
  listKeys: {
    method: "get",
    path: "/admin/users/:id/keys",
    operationId: "adminListApiKeys",
    summary: "A user's API keys, newest first (never their secrets)",
    tags: ["admin"],
    auth: "admin",
    params: userParam,
    query: PageQuery,
    responses: { 200: { description: "One page of keys.", schema: pageOf(ApiKeyView) } },
  },
  revokeKey: {
    method: "delete",
    path: "/admin/users/:id/keys/:key_id",
    operationId: "adminRevokeApiKey",
    summary: "Revoke a user's API key",
    description: "Idempotent.",
    tags: ["admin"],
    auth: "admin",
    params: { ...userParam, key_id: { description: "The key's id.", schema: Id } },
    responses: { 200: { description: "The revoked key.", schema: ApiKeyView } },
  },
  createDevice: {
    method: "post",
    path: "/admin/users/:id/devices",
    operationId: "adminCreateDevice",
    summary: "Register a device for a user (then issue it a token)",
    tags: ["admin"],
    auth: "admin",
    params: userParam,
    body: NewDeviceBody,
    responses: { 201: { description: "The device.", schema: DeviceView } },
    errors: [409],
  },
  listDevices: {
    method: "get",
    path: "/admin/users/:id/devices",
    operationId: "adminListDevices",
    summary: "A user's devices, newest first",
    tags: ["admin"],
    auth: "admin",
    params: userParam,
    query: PageQuery,
    responses: { 200: { description: "One page of devices.", schema: pageOf(DeviceView) } },
  },
  getDevice: {
    method: "get",
    path: "/admin/users/:id/devices/:device_id",
    operationId: "adminGetDevice",
    summary: "One device",
    tags: ["admin"],
    auth: "admin",
    params: deviceParams,
    responses: { 200: { description: "The device.", schema: DeviceView } },
  },
  revokeDevice: {
    method: "delete",
    path: "/admin/users/:id/devices/:device_id",
    operationId: "adminRevokeDevice",
    summary: "Revoke a device and every token it has",
    description: "Idempotent.",
    tags: ["admin"],
    auth: "admin",
    params: deviceParams,
    responses: { 200: { description: "The revoked device.", schema: DeviceView } },
  },
  issueToken: {
    method: "post",
    path: "/admin/users/:id/devices/:device_id/tokens",
    operationId: "adminIssueDeviceToken",
    summary: "Issue a token to a device",
    description: "The body may be omitted. Several tokens may be valid at once (rotation). 409 for a revoked device. The secret is in this response only.",
    tags: ["admin"],
    auth: "admin",
    params: deviceParams,
    body: NewTokenBody,
    responses: { 201: { description: "The token, with its secret.", schema: NewDeviceTokenView } },
    errors: [409],
  },
  listTokens: {
    method: "get",
    path: "/admin/users/:id/devices/:device_id/tokens",
    operationId: "adminListDeviceTokens",
    summary: "A device's tokens, newest first (never their secrets)",
    tags: ["admin"],
    auth: "admin",
    params: deviceParams,
    responses: { 200: { description: "The device's tokens.", schema: TokenList } },
  },
  revokeToken: {
    method: "delete",
    path: "/admin/users/:id/devices/:device_id/tokens/:token_id",
    operationId: "adminRevokeDeviceToken",
    summary: "Revoke one device token",
    description: "Idempotent.",
    tags: ["admin"],
    auth: "admin",
    params: { ...deviceParams, token_id: { description: "The token's id.", schema: Id } },
    responses: { 200: { description: "The revoked token.", schema: DeviceTokenView } },
  },
} satisfies Record<string, RouteSpec>;

export function adminRouter(ctx: GatewayContext): Router {
  const r = Router();
  const { repos } = ctx;
  /** The path's user: 404 for a malformed or unknown id. */
  const user = (req: Request): Promise<User> => repos.users.get(idParam(req, "id", "user"));
  const deviceOf = async (req: Request) => {
    const u = await user(req);
    return { u, device: await repos.devices.get(u.id, idParam(req, "device_id", "device")) };
  };
  const audit = (res: Parameters<typeof principal>[0], what: string, fields: Record<string, unknown>) =>
    ctx.log.info(what, { by: principal(res).username, ...fields });

  mount(r, adminRoutes.createUser, async (req, res) => {
    const b = body(req, NewUserBody);
    const u = await repos.users.create({ username: b.username, displayName: b.display_name, role: b.role });
    audit(res, "user created", { userId: u.id, username: u.username, role: u.role });
    res.status(201).location(`/api/v1/admin/users/${u.id}`).json(userView(u));
  });

  mount(r, adminRoutes.listUsers, async (req, res) => {
    const q = query(req, PageQuery);
    const page = await repos.users.list({ limit: q.limit, cursor: q.cursor });
    res.json({ items: page.items.map(userView), next_cursor: page.nextCursor ?? null });
  });

  mount(r, adminRoutes.getUser, async (req, res) => {
    res.json(userView(await user(req)));
  });

  mount(r, adminRoutes.disableUser, async (req, res) => {
    const u = await user(req);
    if (u.id === principal(res).userId)
      throw new ApiError(409, "conflict", "you cannot disable your own user: another admin can", { user_id: u.id });
    const done = await repos.users.setDisabled(u.id, true);
    audit(res, "user disabled", { userId: u.id });
    res.json(userView(done));
  });

  mount(r, adminRoutes.enableUser, async (req, res) => {
    const u = await user(req);
    const done = await repos.users.setDisabled(u.id, false);
    audit(res, "user enabled", { userId: u.id });
    res.json(userView(done));
  });

  mount(r, adminRoutes.createKey, async (req, res) => {
    const u = await user(req);
    const b = body(req, NewKeyBody);
    const scopes = b.scopes ?? [...DEFAULT_SCOPES];
    if (scopes.includes("admin") && u.role !== "ADMIN") throw ApiError.validation("scopes", `'admin' is only for keys of ADMIN users; ${u.username} is a USER`);
    if (scopes.includes("admin") && oidcManaged(u.username))
      throw ApiError.validation("scopes", `'admin' is not given to keys of OIDC users: ${u.username}'s admin role comes from the identity provider with each token`);
    const { key, secret } = await repos.apiKeys.create(u.id, { name: b.name, scopes, expiresAt: b.expires_at ? new Date(b.expires_at) : undefined });
    audit(res, "api key created", { userId: u.id, keyId: key.id, scopes });
    res.status(201).json({ ...apiKeyView(key), secret });
  });

  mount(r, adminRoutes.listKeys, async (req, res) => {
    const u = await user(req);
    const q = query(req, PageQuery);
    const page = await repos.apiKeys.list(u.id, { limit: q.limit, cursor: q.cursor });
    res.json({ items: page.items.map(apiKeyView), next_cursor: page.nextCursor ?? null });
  });

  mount(r, adminRoutes.revokeKey, async (req, res) => {
    const u = await user(req);
    const key = await repos.apiKeys.revoke(u.id, idParam(req, "key_id", "api key"));
    audit(res, "api key revoked", { userId: u.id, keyId: key.id });
    res.json(apiKeyView(key));
  });

  mount(r, adminRoutes.createDevice, async (req, res) => {
    const u = await user(req);
    const b = body(req, NewDeviceBody);
    const d = await repos.devices.create(u.id, { name: b.name, kind: b.kind });
    audit(res, "device created", { userId: u.id, deviceId: d.id });
    res.status(201).json(deviceView(d));
  });

  mount(r, adminRoutes.listDevices, async (req, res) => {
    const u = await user(req);
    const q = query(req, PageQuery);
    const page = await repos.devices.list(u.id, { limit: q.limit, cursor: q.cursor });
    res.json({ items: page.items.map(deviceView), next_cursor: page.nextCursor ?? null });
  });

  mount(r, adminRoutes.getDevice, async (req, res) => {
    res.json(deviceView((await deviceOf(req)).device));
  });

  mount(r, adminRoutes.revokeDevice, async (req, res) => {
    const { u, device } = await deviceOf(req);
    const d = await repos.devices.revoke(u.id, device.id);
    audit(res, "device revoked", { userId: u.id, deviceId: d.id });
    res.json(deviceView(d));
  });

  mount(r, adminRoutes.issueToken, async (req, res) => {
    const { u, device } = await deviceOf(req);
    const b = bodyOrEmpty(req, NewTokenBody);
    const { token, secret } = await repos.devices.issueToken(u.id, device.id, b.expires_at ? new Date(b.expires_at) : undefined);
    audit(res, "device token issued", { userId: u.id, deviceId: device.id, tokenId: token.id });
    res.status(201).json({ ...deviceTokenView(token), secret });
  });

  mount(r, adminRoutes.listTokens, async (req, res) => {
    const { u, device } = await deviceOf(req);
    res.json({ items: (await repos.devices.listTokens(u.id, device.id)).map(deviceTokenView) });
  });

  mount(r, adminRoutes.revokeToken, async (req, res) => {
    const { u, device } = await deviceOf(req);
    const tokenId = idParam(req, "token_id", "device token");
    // Checked before revoking: a token of the user's other device is not this path's.
    if (!(await repos.devices.listTokens(u.id, device.id)).some((t) => t.id === tokenId)) throw ApiError.notFound("device token", tokenId);
    const t = await repos.devices.revokeToken(u.id, tokenId);
    audit(res, "device token revoked", { userId: u.id, deviceId: device.id, tokenId });
    res.json(deviceTokenView(t));
  });
  return r;
}
