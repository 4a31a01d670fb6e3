// Authorisation: a valid credential without the role or scope a route needs
// is a 403 (never a 401: the caller is known), changes nothing, and a key
// can only give out the scopes it holds.
import assert from "node:assert/strict";
import { startTestGateway, api, type TestGateway, type TestUser } from "./helpers/gateway";
import { assertError, assertUnchanged, credentialState } from "./helpers/auth";

describe("authorisation: roles and scopes", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let ana: TestUser;

  before(async () => {
    t = await startTestGateway();
    ana = await t.user("ana");
  });
  after(() => t?.close());

  it("a USER's key is refused on every admin route, and nothing is created", async () => {
    const before = await credentialState(t.stack);
    const uid = ana.userId;
    const zero = "00000000-0000-4000-8000-000000000000";
    for (const [method, path, body] of [
      ["POST", "/api/v1/admin/users", { username: "eve", role: "ADMIN" }],
      ["GET", "/api/v1/admin/users", undefined],
      ["GET", `/api/v1/admin/users/${uid}`, undefined],
      ["POST", `/api/v1/admin/users/${uid}/disable`, undefined],
      ["POST", `/api/v1/admin/users/${uid}/keys`, { name: "sneaky", scopes: ["admin"] }],
      ["GET", `/api/v1/admin/users/${uid}/keys`, undefined],
      ["DELETE", `/api/v1/admin/users/${uid}/keys/${ana.keyId}`, undefined],
      ["POST", `/api/v1/admin/users/${uid}/devices`, { name: "d" }],
      ["GET", `/api/v1/admin/users/${uid}/devices/${zero}/tokens`, undefined],
      ["GET", "/health", undefined],
      ["GET", "/metrics", undefined],
    ] as const) {
      assertError(await api(t, ana.key, method, path, body), 403, "forbidden");
    }
    await assertUnchanged(t, before);
  });

  it("an ADMIN user's key without the admin scope is refused on admin routes", async () => {
    const u = await t.stack.db.repos.users.create({ username: "second-admin", role: "ADMIN" });
    const { secret } = await t.stack.db.repos.apiKeys.create(u.id, { name: "chat only", scopes: ["chat"] });
    assertError(await api(t, secret, "GET", "/api/v1/admin/users"), 403, "forbidden");
    assert.equal((await api(t, secret, "GET", "/api/v1/conversations")).status, 200);
  });

  it("a key without a route's scope is refused there and accepted elsewhere", async () => {
    const audioOnly = await t.user("audio-only", ["audio"]);
    const before = await credentialState(t.stack);
    const r = await api(t, audioOnly.key, "GET", "/api/v1/conversations");
    assertError(r, 403, "forbidden");
    assert.match(r.json.error.message, /'chat'/);
    assertError(await api(t, audioOnly.key, "POST", "/api/v1/chat", { content: "hola" }), 403, "forbidden");
    assert.equal(await t.stack.db.prisma.request.count({ where: { userId: audioOnly.userId } }), 0);
    assert.equal((await api(t, audioOnly.key, "GET", "/api/v1/keys")).status, 200, "its own keys need no scope");
    await assertUnchanged(t, before);
  });

  it("a key gives out only scopes it holds; without `scopes`, its own except admin", async () => {
    const chatOnly = await t.user("chat-only", ["chat"]);
    const before = await credentialState(t.stack);
    for (const scopes of [["audio"], ["chat", "memory"], ["admin"]]) {
      const r = await api(t, chatOnly.key, "POST", "/api/v1/keys", { name: "wider", scopes });
      assertError(r, 403, "forbidden", "scopes");
      assert.deepEqual(r.json.error.details.missing, scopes.filter((s) => s !== "chat"));
    }
    await assertUnchanged(t, before);

    const narrow = await api(t, chatOnly.key, "POST", "/api/v1/keys", { name: "same" });
    assert.equal(narrow.status, 201);
    assert.deepEqual(narrow.json.scopes, ["chat"]);

    const fromAdmin = await api(t, t.admin.key, "POST", "/api/v1/keys", { name: "admin's default" });
    assert.deepEqual(fromAdmin.json.scopes, ["chat", "audio", "embeddings", "memory"]);
    assertError(await api(t, fromAdmin.json.secret, "GET", "/api/v1/admin/users"), 403, "forbidden");
    const withAdmin = await api(t, t.admin.key, "POST", "/api/v1/keys", { name: "admin's admin", scopes: ["admin"] });
    assert.equal(withAdmin.status, 201);
    assert.equal((await api(t, withAdmin.json.secret, "GET", "/api/v1/admin/users")).status, 200);
  });

  it("a device token may chat but manages no keys and administers nothing", async () => {
    const dev = await api(t, t.admin.key, "POST", `/api/v1/admin/users/${ana.userId}/devices`, { name: "porch" });
    const tok = await api(t, t.admin.key, "POST", `/api/v1/admin/users/${ana.userId}/devices/${dev.json.id}/tokens`, {});
    assert.equal(tok.status, 201);
    const before = await credentialState(t.stack);
    assertError(await api(t, tok.json.secret, "GET", "/api/v1/keys"), 403, "forbidden");
    assertError(await api(t, tok.json.secret, "POST", "/api/v1/keys", { name: "from a device" }), 403, "forbidden");
    assertError(await api(t, tok.json.secret, "DELETE", `/api/v1/keys/${ana.keyId}`), 403, "forbidden");
    assertError(await api(t, tok.json.secret, "GET", "/api/v1/admin/users"), 403, "forbidden");
    await assertUnchanged(t, before);
    assert.equal((await api(t, tok.json.secret, "GET", "/api/v1/conversations")).status, 200);
  });
});
