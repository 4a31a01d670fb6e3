// The admin API's users: create, list with cursor pagination, get, disable
// and enable, with the refusals that keep the installation consistent.
import assert from "node:assert/strict";
import { startTestGateway, api, type TestGateway } from "./helpers/gateway";
import { assertError, assertUnchanged, credentialState } from "./helpers/auth";

describe("admin API: users", function () {
  this.timeout(120_000);
  let t: TestGateway;
  const admin = () => t.admin.key;

  before(async () => {
    t = await startTestGateway();
  });
  after(() => t?.close());

  it("creates a user, answers 201 with its URL, and gets it back", async () => {
    const r = await api(t, admin(), "POST", "/api/v1/admin/users", { username: "ana", display_name: "Ana Pérez" });
    assert.equal(r.status, 201);
    assert.equal(r.headers.get("location"), `/api/v1/admin/users/${r.json.id}`);
    assert.deepEqual(
      { ...r.json, id: undefined, created_at: undefined },
      { id: undefined, username: "ana", display_name: "Ana Pérez", role: "USER", disabled: false, disabled_at: null, created_at: undefined },
    );
    const got = await api(t, admin(), "GET", `/api/v1/admin/users/${r.json.id}`);
    assert.deepEqual(got.json, r.json);
    const row = await t.stack.db.repos.users.get(r.json.id);
    assert.deepEqual([row.username, row.displayName, row.role], ["ana", "Ana Pérez", "USER"]);

    const boss = await api(t, admin(), "POST", "/api/v1/admin/users", { username: "boss", role: "ADMIN" });
    assert.equal(boss.json.role, "ADMIN");
  });

  it("refuses a taken username with 409 and an invalid one with 400, creating nothing", async () => {
    await api(t, admin(), "POST", "/api/v1/admin/users", { username: "taken" });
    const before = await credentialState(t.stack);
    assertError(await api(t, admin(), "POST", "/api/v1/admin/users", { username: "taken" }), 409, "conflict");
    for (const username of ["Ana", "oidc:123", "", "-dash", "a".repeat(65), "spa ce"])
      assertError(await api(t, admin(), "POST", "/api/v1/admin/users", { username }), 400, "validation_error", "username");
    assertError(await api(t, admin(), "POST", "/api/v1/admin/users", { username: "x", role: "ROOT" }), 400, "validation_error", "role");
    assertError(await api(t, admin(), "POST", "/api/v1/admin/users", { username: "x", is_admin: true }), 400, "validation_error");
    await assertUnchanged(t, before);
  });

  it("lists every user once across pages, oldest first", async () => {
    for (let i = 0; i < 5; i++) assert.equal((await api(t, admin(), "POST", "/api/v1/admin/users", { username: `page-${i}` })).status, 201);
    const all = await t.stack.db.prisma.user.findMany({ orderBy: [{ createdAt: "asc" }, { id: "asc" }] });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = cursor ? `?limit=2&cursor=${encodeURIComponent(cursor)}` : "?limit=2";
      const r = await api(t, admin(), "GET", `/api/v1/admin/users${q}`);
      assert.equal(r.status, 200);
      assert.ok(r.json.items.length <= 2);
      seen.push(...r.json.items.map((u: { username: string }) => u.username));
      cursor = r.json.next_cursor;
      pages++;
    } while (cursor);
    assert.deepEqual(seen, all.map((u) => u.username));
    assert.equal(pages, Math.ceil(all.length / 2));
  });

  it("404 for an unknown or malformed user id", async () => {
    assertError(await api(t, admin(), "GET", "/api/v1/admin/users/00000000-0000-4000-8000-000000000000"), 404, "not_found");
    assertError(await api(t, admin(), "GET", "/api/v1/admin/users/not-a-uuid"), 404, "not_found");
    assertError(await api(t, admin(), "POST", "/api/v1/admin/users/00000000-0000-4000-8000-000000000000/disable"), 404, "not_found");
  });

  it("disables and enables a user, idempotently; an admin cannot disable themselves", async () => {
    const u = await t.user("dora");
    const d1 = await api(t, admin(), "POST", `/api/v1/admin/users/${u.userId}/disable`);
    assert.equal(d1.status, 200);
    assert.equal(d1.json.disabled, true);
    assertError(await api(t, u.key, "GET", "/api/v1/keys"), 401, "unauthorized");
    const d2 = await api(t, admin(), "POST", `/api/v1/admin/users/${u.userId}/disable`);
    assert.equal(d2.json.disabled_at, d1.json.disabled_at, "disabling again keeps the first time");

    const e = await api(t, admin(), "POST", `/api/v1/admin/users/${u.userId}/enable`);
    assert.deepEqual([e.json.disabled, e.json.disabled_at], [false, null]);
    assert.equal((await api(t, u.key, "GET", "/api/v1/keys")).status, 200);

    const before = await credentialState(t.stack);
    assertError(await api(t, admin(), "POST", `/api/v1/admin/users/${t.admin.userId}/disable`), 409, "conflict");
    await assertUnchanged(t, before);
    assert.equal((await api(t, admin(), "GET", "/api/v1/admin/users?limit=1")).status, 200);
  });
});
