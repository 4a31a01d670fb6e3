// API keys through the admin API and a user's own /keys: the secret is shown
// once (in the creating response) and stored nowhere, lists never carry it,
// revocation is immediate and idempotent, and another user's key is a 404
// that leaves the key untouched.
import assert from "node:assert/strict";
import { startTestGateway, api, type TestGateway, type TestUser } from "./helpers/gateway";
import { assertError, assertUnchanged, credentialState } from "./helpers/auth";

const KEY = /^jota_k_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/;

describe("API keys: admin and own", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let ana: TestUser;
  let bob: TestUser;

  before(async () => {
    t = await startTestGateway();
    ana = await t.user("ana");
    bob = await t.user("bob");
  });
  after(() => t?.close());

  /** Every text column of every api_keys row, as the database holds it. */
  async function storedKeyText(): Promise<string> {
    const rows = await t.stack.db.prisma.$queryRawUnsafe<Record<string, unknown>[]>("SELECT * FROM api_keys");
    return JSON.stringify(rows);
  }

  it("an admin creates a key for a user: the secret is in that response only, and it authenticates as the user", async () => {
    const r = await api(t, t.admin.key, "POST", `/api/v1/admin/users/${ana.userId}/keys`, { name: "laptop", scopes: ["chat", "memory"] });
    assert.equal(r.status, 201);
    assert.match(r.json.secret, KEY);
    assert.ok(r.json.secret.startsWith(`${r.json.prefix}_`));
    assert.deepEqual([r.json.user_id, r.json.name, r.json.scopes, r.json.status, r.json.revoked_at], [ana.userId, "laptop", ["chat", "memory"], "active", null]);

    const own = await api(t, r.json.secret, "GET", "/api/v1/keys");
    assert.equal(own.status, 200);
    assert.ok(own.json.items.every((k: { user_id: string }) => k.user_id === ana.userId));

    const tail = r.json.secret.slice(r.json.prefix.length + 1);
    for (const list of [own, await api(t, t.admin.key, "GET", `/api/v1/admin/users/${ana.userId}/keys`)]) {
      assert.ok(list.json.items.some((k: { id: string }) => k.id === r.json.id));
      assert.ok(!list.text.includes(tail), "a list shows a secret");
      assert.ok(list.json.items.every((k: object) => !("secret" in k)));
    }
    assert.ok(!(await storedKeyText()).includes(tail), "the database holds the secret");
  });

  it("default scopes leave out admin, and admin is only for ADMIN users' keys", async () => {
    const d = await api(t, t.admin.key, "POST", `/api/v1/admin/users/${ana.userId}/keys`, { name: "default" });
    assert.deepEqual(d.json.scopes, ["chat", "audio", "embeddings", "memory"]);
    const before = await credentialState(t.stack);
    assertError(await api(t, t.admin.key, "POST", `/api/v1/admin/users/${ana.userId}/keys`, { name: "x", scopes: ["admin"] }), 400, "validation_error", "scopes");
    await assertUnchanged(t, before);
  });

  it("revokes a key at once, idempotently, keeping it listed as revoked", async () => {
    const k = await api(t, t.admin.key, "POST", `/api/v1/admin/users/${ana.userId}/keys`, { name: "doomed" });
    assert.equal((await api(t, k.json.secret, "GET", "/api/v1/keys")).status, 200);
    const r1 = await api(t, t.admin.key, "DELETE", `/api/v1/admin/users/${ana.userId}/keys/${k.json.id}`);
    assert.equal(r1.status, 200);
    assert.equal(r1.json.status, "revoked");
    assertError(await api(t, k.json.secret, "GET", "/api/v1/keys"), 401, "unauthorized");
    const r2 = await api(t, t.admin.key, "DELETE", `/api/v1/admin/users/${ana.userId}/keys/${k.json.id}`);
    assert.equal(r2.json.revoked_at, r1.json.revoked_at);
    const listed = await api(t, ana.key, "GET", "/api/v1/keys?limit=200");
    assert.equal(listed.json.items.find((x: { id: string }) => x.id === k.json.id)?.status, "revoked");
  });

  it("another user's key id is a 404 on every path, and the key keeps working", async () => {
    const before = await credentialState(t.stack);
    assertError(await api(t, ana.key, "DELETE", `/api/v1/keys/${bob.keyId}`), 404, "not_found");
    assertError(await api(t, t.admin.key, "DELETE", `/api/v1/admin/users/${ana.userId}/keys/${bob.keyId}`), 404, "not_found");
    assertError(await api(t, ana.key, "DELETE", "/api/v1/keys/00000000-0000-4000-8000-000000000000"), 404, "not_found");
    assertError(await api(t, ana.key, "DELETE", "/api/v1/keys/nope"), 404, "not_found");
    await assertUnchanged(t, before);
    assert.equal((await api(t, bob.key, "GET", "/api/v1/keys")).status, 200);
    const anas = await api(t, ana.key, "GET", "/api/v1/keys?limit=200");
    assert.ok(anas.json.items.every((k: { id: string }) => k.id !== bob.keyId), "a user sees another user's key");
  });

  it("a user creates, lists with pagination and revokes their own keys", async () => {
    const u = await t.user("cleo");
    const made: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await api(t, u.key, "POST", "/api/v1/keys", { name: `k${i}`, scopes: ["chat"] });
      assert.equal(r.status, 201);
      assert.equal(r.headers.get("location"), `/api/v1/keys/${r.json.id}`);
      assert.match(r.json.secret, KEY);
      made.push(r.json.id);
    }
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const r: Awaited<ReturnType<typeof api>> = await api(t, u.key, "GET", `/api/v1/keys?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      ids.push(...r.json.items.map((k: { id: string }) => k.id));
      cursor = r.json.next_cursor;
    } while (cursor);
    assert.deepEqual(ids, [...made.reverse(), u.keyId], "newest first, each once");

    const gone = await api(t, u.key, "DELETE", `/api/v1/keys/${u.keyId}`);
    assert.equal(gone.json.status, "revoked");
    assertError(await api(t, u.key, "GET", "/api/v1/keys"), 401, "unauthorized");
  });
});
