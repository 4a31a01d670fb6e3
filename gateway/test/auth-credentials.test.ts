// Authentication with API keys and device tokens: a missing, malformed,
// unknown, revoked or expired credential, or one of a disabled user, is the
// same 401 (Jota's error shape, WWW-Authenticate), nothing about it is
// stored, and the gateway keeps serving; a good one works and its use is
// recorded. Liveness is the one public route.
import assert from "node:assert/strict";
import { startTestGateway, api, type TestGateway, type TestUser } from "./helpers/gateway";
import { assertError, assertUnchanged, credentialState } from "./helpers/auth";

describe("authentication: API keys and device tokens", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let ana: TestUser;

  before(async () => {
    t = await startTestGateway();
    ana = await t.user("ana");
  });
  after(() => t?.close());

  it("liveness needs no credential; every /api/v1 route does", async () => {
    assert.equal((await api(t, undefined, "GET", "/health/live")).status, 200);
    for (const [method, path] of [
      ["GET", "/api/v1/keys"],
      ["POST", "/api/v1/keys"],
      ["GET", "/api/v1/admin/users"],
      ["GET", "/api/v1/conversations"],
      ["GET", "/health"],
    ]) {
      assertError(await api(t, undefined, method!, path!), 401, "unauthorized");
    }
  });

  it("refuses a missing, malformed, unknown, revoked or expired key alike, and stores nothing", async () => {
    const revoked = await api(t, ana.key, "POST", "/api/v1/keys", { name: "to revoke" });
    assert.equal(revoked.status, 201);
    assert.equal((await api(t, ana.key, "DELETE", `/api/v1/keys/${revoked.json.id}`)).status, 200);
    const expiring = await api(t, ana.key, "POST", "/api/v1/keys", { name: "short-lived", expires_at: new Date(Date.now() + 1500).toISOString() });
    assert.equal(expiring.status, 201);
    assert.equal((await api(t, expiring.json.secret, "GET", "/api/v1/keys")).status, 200, "works before it expires");
    await new Promise((r) => setTimeout(r, 1600));

    const before = await credentialState(t.stack);
    const unknownKey = `${ana.key.slice(0, 20)}${"A".repeat(ana.key.length - 20)}`;
    const cases: [string, Record<string, string>][] = [
      ["no header", {}],
      ["empty bearer", { authorization: "Bearer " }],
      ["basic auth", { authorization: `Basic ${Buffer.from("ana:pw").toString("base64")}` }],
      ["two tokens", { authorization: `Bearer ${ana.key} ${ana.key}` }],
      ["unknown key", { authorization: `Bearer ${unknownKey}` }],
      ["unknown prefix", { authorization: "Bearer jota_x_0123456789ab_xyz" }],
      ["a JWT without OIDC configured", { authorization: "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbmEifQ." }],
      ["revoked key", { authorization: `Bearer ${revoked.json.secret}` }],
      ["expired key", { authorization: `Bearer ${expiring.json.secret}` }],
      ["unknown device token", { authorization: "Bearer jota_d_0123456789ab_" + "x".repeat(43) }],
    ];
    const messages = new Map<string, string>();
    for (const [what, headers] of cases) {
      const r = await api(t, undefined, "GET", "/api/v1/keys", undefined, headers);
      assertError(r, 401, "unauthorized");
      messages.set(what, r.json.error.message);
    }
    // Which keys exist is not told: unknown, revoked and expired read the same.
    assert.equal(messages.get("unknown key"), messages.get("revoked key"));
    assert.equal(messages.get("unknown key"), messages.get("expired key"));
    await assertUnchanged(t, before);
    assert.equal((await api(t, ana.key, "GET", "/api/v1/keys")).status, 200, "the owner's good key still works");
  });

  it("a good key works and its last use is recorded", async () => {
    const u = await t.user("bea");
    const before = await t.stack.db.prisma.apiKey.findUniqueOrThrow({ where: { id: u.keyId } });
    assert.equal(before.lastUsedAt, null);
    const r = await api(t, u.key, "GET", "/api/v1/keys");
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.items.map((k: { id: string }) => k.id), [u.keyId]);
    assert.notEqual(r.json.items[0].last_used_at, null);
    const after = await t.stack.db.prisma.apiKey.findUniqueOrThrow({ where: { id: u.keyId } });
    assert.ok(after.lastUsedAt && after.lastUsedAt.getTime() <= Date.now());
  });

  it("a disabled user's keys and device tokens stop working at once, and work again when enabled", async () => {
    const u = await t.user("carl");
    const dev = await api(t, t.admin.key, "POST", `/api/v1/admin/users/${u.userId}/devices`, { name: "hall" });
    const tok = await api(t, t.admin.key, "POST", `/api/v1/admin/users/${u.userId}/devices/${dev.json.id}/tokens`);
    assert.equal(tok.status, 201);
    assert.equal((await api(t, u.key, "GET", "/api/v1/conversations")).status, 200);
    assert.equal((await api(t, tok.json.secret, "GET", "/api/v1/conversations")).status, 200);

    assert.equal((await api(t, t.admin.key, "POST", `/api/v1/admin/users/${u.userId}/disable`)).status, 200);
    assertError(await api(t, u.key, "GET", "/api/v1/conversations"), 401, "unauthorized");
    assertError(await api(t, tok.json.secret, "GET", "/api/v1/conversations"), 401, "unauthorized");

    assert.equal((await api(t, t.admin.key, "POST", `/api/v1/admin/users/${u.userId}/enable`)).status, 200);
    assert.equal((await api(t, u.key, "GET", "/api/v1/conversations")).status, 200);
    assert.equal((await api(t, tok.json.secret, "GET", "/api/v1/conversations")).status, 200);
  });

  it("GET /api/v1/me names the credential's user, how it authenticated, and its scopes", async () => {
    const me = await api(t, ana.key, "GET", "/api/v1/me");
    assert.equal(me.status, 200);
    assert.deepEqual(me.json, {
      user_id: ana.userId,
      username: "ana",
      role: "USER",
      via: "api_key",
      credential_id: ana.keyId,
      device_id: null,
      scopes: ["chat", "audio", "embeddings", "memory"],
    });
    const admin = await api(t, t.admin.key, "GET", "/api/v1/me");
    assert.deepEqual([admin.json.user_id, admin.json.role, admin.json.scopes.includes("admin")], [t.admin.userId, "ADMIN", true]);
    assertError(await api(t, undefined, "GET", "/api/v1/me"), 401, "unauthorized");
  });

  it("a device token acts for its user, and stops with its device", async () => {
    const dev = await api(t, t.admin.key, "POST", `/api/v1/admin/users/${ana.userId}/devices`, { name: "kitchen", kind: "satellite" });
    const tok = await api(t, t.admin.key, "POST", `/api/v1/admin/users/${ana.userId}/devices/${dev.json.id}/tokens`);
    const token = tok.json.secret as string;
    assert.match(token, /^jota_d_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);

    const conv = await api(t, token, "POST", "/api/v1/conversations", { title: "from the kitchen" });
    assert.equal(conv.status, 201);
    const listed = await api(t, ana.key, "GET", "/api/v1/conversations");
    assert.ok(listed.json.items.some((c: { id: string }) => c.id === conv.json.id), "the device's conversation is its user's");
    const seen = await t.stack.db.prisma.device.findUniqueOrThrow({ where: { id: dev.json.id } });
    assert.ok(seen.lastSeenAt, "the device's last contact is recorded");

    assert.equal((await api(t, t.admin.key, "DELETE", `/api/v1/admin/users/${ana.userId}/devices/${dev.json.id}`)).status, 200);
    assertError(await api(t, token, "GET", "/api/v1/conversations"), 401, "unauthorized");
  });
});
