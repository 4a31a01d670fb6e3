// Devices through the admin API: register, list, issue tokens (shown once,
// several alive for rotation), revoke a token or the whole device; another
// user's device or another device's token is a 404 that changes nothing.
import assert from "node:assert/strict";
import { startTestGateway, api, type TestGateway, type TestUser } from "./helpers/gateway";
import { assertError, assertUnchanged, credentialState } from "./helpers/auth";

describe("admin API: devices and their tokens", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let ana: TestUser;
  let bob: TestUser;
  const admin = () => t.admin.key;
  const devices = (u: TestUser) => `/api/v1/admin/users/${u.userId}/devices`;

  before(async () => {
    t = await startTestGateway();
    ana = await t.user("ana");
    bob = await t.user("bob");
  });
  after(() => t?.close());

  it("registers a device, refuses its name twice, lists and gets it", async () => {
    const r = await api(t, admin(), "POST", devices(ana), { name: "Kitchen satellite", kind: "satellite" });
    assert.equal(r.status, 201);
    assert.deepEqual([r.json.user_id, r.json.name, r.json.kind, r.json.revoked, r.json.last_seen_at], [ana.userId, "Kitchen satellite", "satellite", false, null]);
    const before = await credentialState(t.stack);
    assertError(await api(t, admin(), "POST", devices(ana), { name: "Kitchen satellite" }), 409, "conflict");
    assertError(await api(t, admin(), "POST", devices(ana), { name: "x", kind: "Not A Kind" }), 400, "validation_error", "kind");
    assertError(await api(t, admin(), "POST", devices(ana), { name: "bad\u0007name" }), 400, "validation_error", "name");
    await assertUnchanged(t, before);
    const same = await api(t, admin(), "POST", devices(bob), { name: "Kitchen satellite" });
    assert.equal(same.status, 201, "names are unique per user only");

    const list = await api(t, admin(), "GET", devices(ana));
    assert.deepEqual(list.json.items.map((d: { id: string }) => d.id), [r.json.id]);
    assert.deepEqual((await api(t, admin(), "GET", `${devices(ana)}/${r.json.id}`)).json, r.json);
  });

  it("issues tokens shown once; each authenticates; revoking one leaves the other", async () => {
    const d = await api(t, admin(), "POST", devices(ana), { name: "bedroom" });
    const base = `${devices(ana)}/${d.json.id}/tokens`;
    const t1 = await api(t, admin(), "POST", base); // no body at all
    const t2 = await api(t, admin(), "POST", base, { expires_at: new Date(Date.now() + 3_600_000).toISOString() });
    for (const tok of [t1, t2]) {
      assert.equal(tok.status, 201);
      assert.match(tok.json.secret, /^jota_d_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
      assert.equal((await api(t, tok.json.secret, "GET", "/api/v1/conversations")).status, 200);
    }
    assert.notEqual(t2.json.expires_at, null);

    const list = await api(t, admin(), "GET", base);
    assert.deepEqual(list.json.items.map((x: { id: string }) => x.id), [t2.json.id, t1.json.id]);
    for (const tok of [t1, t2]) assert.ok(!list.text.includes(tok.json.secret.slice(20)), "a list shows a token");
    const rows = JSON.stringify(await t.stack.db.prisma.$queryRawUnsafe("SELECT * FROM device_tokens"));
    for (const tok of [t1, t2]) assert.ok(!rows.includes(tok.json.secret.slice(20)), "the database holds a token");

    const rv = await api(t, admin(), "DELETE", `${base}/${t1.json.id}`);
    assert.equal(rv.json.status, "revoked");
    assertError(await api(t, t1.json.secret, "GET", "/api/v1/conversations"), 401, "unauthorized");
    assert.equal((await api(t, t2.json.secret, "GET", "/api/v1/conversations")).status, 200);
  });

  it("revoking a device revokes all its tokens and refuses new ones", async () => {
    const d = await api(t, admin(), "POST", devices(ana), { name: "garage" });
    const base = `${devices(ana)}/${d.json.id}`;
    const toks = [await api(t, admin(), "POST", `${base}/tokens`), await api(t, admin(), "POST", `${base}/tokens`)];
    const r = await api(t, admin(), "DELETE", base);
    assert.equal(r.json.revoked, true);
    for (const tok of toks) assertError(await api(t, tok.json.secret, "GET", "/api/v1/conversations"), 401, "unauthorized");
    const before = await credentialState(t.stack);
    assertError(await api(t, admin(), "POST", `${base}/tokens`), 409, "conflict");
    const again = await api(t, admin(), "DELETE", base);
    assert.equal(again.json.revoked_at, r.json.revoked_at, "revoking again keeps the first time");
    await assertUnchanged(t, before);
    const listed = await api(t, admin(), "GET", `${base}/tokens`);
    assert.ok(listed.json.items.every((x: { status: string }) => x.status === "revoked"));
  });

  it("another user's device, or another device's token, is a 404 that changes nothing", async () => {
    const bobs = await api(t, admin(), "POST", devices(bob), { name: "bob's" });
    const bobTok = await api(t, admin(), "POST", `${devices(bob)}/${bobs.json.id}/tokens`);
    const anas = await api(t, admin(), "POST", devices(ana), { name: "ana's" });
    const anaTok = await api(t, admin(), "POST", `${devices(ana)}/${anas.json.id}/tokens`);
    const anaOther = await api(t, admin(), "POST", devices(ana), { name: "ana's other" });

    const before = await credentialState(t.stack);
    const wrong = [
      ["GET", `${devices(ana)}/${bobs.json.id}`],
      ["DELETE", `${devices(ana)}/${bobs.json.id}`],
      ["POST", `${devices(ana)}/${bobs.json.id}/tokens`],
      ["GET", `${devices(ana)}/${bobs.json.id}/tokens`],
      ["DELETE", `${devices(ana)}/${bobs.json.id}/tokens/${bobTok.json.id}`],
      ["DELETE", `${devices(ana)}/${anaOther.json.id}/tokens/${anaTok.json.id}`],
      ["DELETE", `${devices(ana)}/${anas.json.id}/tokens/${bobTok.json.id}`],
      ["GET", `${devices(ana)}/not-a-uuid`],
    ] as const;
    for (const [method, path] of wrong) assertError(await api(t, admin(), method, path), 404, "not_found");
    await assertUnchanged(t, before);
    for (const tok of [bobTok, anaTok]) assert.equal((await api(t, tok.json.secret, "GET", "/api/v1/conversations")).status, 200);
  });
});
