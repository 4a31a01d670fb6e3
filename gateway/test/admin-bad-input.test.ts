// Bad input to the key and admin routes: each gets its documented status and
// error (400 naming the field, 413, 415), the gateway keeps serving, and
// nothing stored about users and credentials changes.
import assert from "node:assert/strict";
import { startTestGateway, api, type TestGateway, type TestUser } from "./helpers/gateway";
import { assertError, assertUnchanged, credentialState } from "./helpers/auth";

const MAX_BODY = 2048;

/** A raw POST with bytes as they are (fetch would re-encode a string). */
async function rawPost(t: TestGateway, key: string, path: string, bytes: Buffer, contentType = "application/json") {
  const res = await fetch(`${t.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": contentType }, body: bytes });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: JSON.parse(text) };
}

describe("admin and key routes: bad input", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let ana: TestUser;

  before(async () => {
    t = await startTestGateway({ env: { JOTA_MAX_BODY_BYTES: String(MAX_BODY) } });
    ana = await t.user("ana");
  });
  after(() => t?.close());

  it("malformed JSON, invalid UTF-8, a body too large and a wrong content type", async () => {
    const before = await credentialState(t.stack);
    for (const [key, path] of [
      [ana.key, "/api/v1/keys"],
      [t.admin.key, "/api/v1/admin/users"],
    ] as const) {
      assertError(await rawPost(t, key, path, Buffer.from('{"name": "x",')), 400, "invalid_json");
      assertError(await rawPost(t, key, path, Buffer.from("[1, 2")), 400, "invalid_json");
      const badUtf8 = Buffer.concat([Buffer.from('{"name": "caf'), Buffer.from([0xc3, 0x28]), Buffer.from('", "username": "x"}')]);
      assertError(await rawPost(t, key, path, badUtf8), 400, "validation_error", "(body)");
      const big = Buffer.from(JSON.stringify({ name: "x".repeat(MAX_BODY), username: "big" }));
      const r = await rawPost(t, key, path, big);
      assertError(r, 413, "payload_too_large");
      assert.equal(r.json.error.details.limit, MAX_BODY);
      assertError(await rawPost(t, key, path, Buffer.from("name=x"), "application/x-www-form-urlencoded"), 415, "unsupported_media_type");
      assertError(await rawPost(t, key, path, Buffer.from('"just a string"')), 400, "invalid_json");
    }
    await assertUnchanged(t, before);
  });

  it("wrong types, unknown fields and impossible values name the field", async () => {
    const before = await credentialState(t.stack);
    const inFuture = new Date(Date.now() + 3_600_000).toISOString();
    const keyCases: [unknown, string][] = [
      [{}, "name"],
      [{ name: 42 }, "name"],
      [{ name: "   " }, "name"],
      [{ name: "x".repeat(101) }, "name"],
      [{ name: "tab\there" }, "name"],
      [{ name: "x", scopes: "chat" }, "scopes"],
      [{ name: "x", scopes: [] }, "scopes"],
      [{ name: "x", scopes: ["chat", "root"] }, "scopes.1"],
      [{ name: "x", scopes: ["chat", "chat"] }, "scopes"],
      [{ name: "x", expires_at: "tomorrow" }, "expires_at"],
      [{ name: "x", expires_at: "2020-01-01T00:00:00Z" }, "expires_at"],
      [{ name: "x", expires_at: inFuture.replace("Z", "") }, "expires_at"],
      [{ name: "x", scope: ["chat"] }, "scope"],
      [{ name: "x", user_id: t.admin.userId }, "user_id"],
    ];
    for (const [body, field] of keyCases) {
      const r = await api(t, ana.key, "POST", "/api/v1/keys", body);
      assertError(r, 400, "validation_error");
      assert.equal(r.json.error.details.field, field, `${JSON.stringify(body)}: ${r.text}`);
    }

    const userPath = `/api/v1/admin/users/${ana.userId}`;
    assertError(await api(t, t.admin.key, "POST", "/api/v1/admin/users", { username: ["ana"] }), 400, "validation_error", "username");
    assertError(await api(t, t.admin.key, "POST", "/api/v1/admin/users", { username: "zed", display_name: "" }), 400, "validation_error", "display_name");
    assertError(await api(t, t.admin.key, "POST", `${userPath}/devices`, { name: "d", owner: "bob" }), 400, "validation_error", "owner");
    const dev = await api(t, t.admin.key, "POST", `${userPath}/devices`, { name: "valid" });
    assertError(await api(t, t.admin.key, "POST", `${userPath}/devices/${dev.json.id}/tokens`, { expires_at: 5 }), 400, "validation_error", "expires_at");
    assertError(await api(t, t.admin.key, "POST", `${userPath}/devices/${dev.json.id}/tokens`, "{}", { "content-type": "text/plain" }), 415, "unsupported_media_type");
    const afterDevice = await credentialState(t.stack);
    assert.equal(afterDevice.deviceTokens.length, before.deviceTokens.length);
    assert.equal(afterDevice.apiKeys.length, before.apiKeys.length);
    assert.equal(afterDevice.users.length, before.users.length);
  });

  it("bad list queries: limit out of range, a forged cursor, an unknown parameter", async () => {
    const before = await credentialState(t.stack);
    for (const q of ["limit=0", "limit=201", "limit=abc"]) assertError(await api(t, ana.key, "GET", `/api/v1/keys?${q}`), 400, "validation_error", "limit");
    assertError(await api(t, ana.key, "GET", "/api/v1/keys?cursor=bm90LWEtY3Vyc29y"), 400, "validation_error", "cursor");
    assertError(await api(t, t.admin.key, "GET", "/api/v1/admin/users?cursor=%%%"), 400, "validation_error");
    // Cursors of the right shape whose id or instant the database would refuse.
    const forge = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
    for (const v of [
      { at: new Date().toISOString(), id: "not-a-uuid" },
      { at: "-271821-04-20T00:00:00.000Z", id: ana.userId },
    ])
      for (const [key, path] of [
        [ana.key, "/api/v1/keys"],
        [t.admin.key, "/api/v1/admin/users"],
        [t.admin.key, `/api/v1/admin/users/${ana.userId}/keys`],
        [t.admin.key, `/api/v1/admin/users/${ana.userId}/devices`],
      ] as const)
        assertError(await api(t, key, "GET", `${path}?cursor=${forge(v)}`), 400, "validation_error", "cursor");
    assertError(await api(t, ana.key, "GET", "/api/v1/keys?user_id=someone"), 400, "validation_error", "user_id");
    await assertUnchanged(t, before);
    assert.equal((await api(t, ana.key, "GET", "/api/v1/keys?limit=1")).status, 200);
  });
});
