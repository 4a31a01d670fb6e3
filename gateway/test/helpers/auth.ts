// Shared checks of the auth and admin tests: Jota's error shape, and what
// is stored about users and credentials (so a refused request can be shown
// to have changed nothing).
import assert from "node:assert/strict";
import type { Stack } from "../../src/stack";
import { api } from "./gateway";

type Reply = Awaited<ReturnType<typeof api>>;

/** The reply is Jota's error shape with this status and code (and, for a 400, names `field`). */
export function assertError(r: Reply, status: number, code: string, field?: string): void {
  assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status}: ${r.text}`);
  assert.deepEqual(Object.keys(r.json ?? {}), ["error"], r.text);
  const e = r.json.error;
  assert.deepEqual(Object.keys(e).sort(), ["code", "details", "message"], r.text);
  assert.equal(e.code, code, r.text);
  assert.equal(typeof e.message, "string");
  assert.ok(e.message.length > 0);
  if (field !== undefined) assert.equal(e.details.field, field, r.text);
  if (status === 401) assert.equal(r.headers.get("www-authenticate"), 'Bearer realm="jota"');
  if (status === 429) assert.match(r.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
}

export interface CredentialState {
  users: unknown[];
  apiKeys: unknown[];
  devices: unknown[];
  deviceTokens: unknown[];
}

/** Every row of the credential tables (lastUsedAt/lastSeenAt and so updatedAt left out: a successful authentication updates them). */
export async function credentialState(stack: Stack): Promise<CredentialState> {
  const p = stack.db.prisma;
  const byId = { orderBy: { id: "asc" as const } };
  return {
    users: await p.user.findMany(byId),
    apiKeys: (await p.apiKey.findMany(byId)).map(({ lastUsedAt: _l, updatedAt: _u, ...k }) => k),
    devices: (await p.device.findMany(byId)).map(({ lastSeenAt: _l, updatedAt: _u, ...d }) => d),
    deviceTokens: (await p.deviceToken.findMany(byId)).map(({ lastUsedAt: _l, updatedAt: _u, ...t }) => t),
  };
}

/** The gateway still answers, and nothing stored about users and credentials differs from `before`. */
export async function assertUnchanged(t: { url: string; stack: Stack }, before: CredentialState): Promise<void> {
  assert.equal((await api(t, undefined, "GET", "/health/live")).status, 200);
  assert.deepEqual(await credentialState(t.stack), before);
}
