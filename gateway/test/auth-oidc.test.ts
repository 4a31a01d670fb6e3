// OIDC bearer tokens, verified for real: a local HTTP server on 127.0.0.1
// serves a JWKS generated with jose, tokens are signed with its key, and the
// gateway is configured with that issuer, audience and JWKS URL. A good
// token maps to the Jota user `oidc:<sub>` with the token's Jota scopes;
// a wrong issuer, audience, key or algorithm, or an expired token, is a 401
// that creates no user; admin needs the jota-admin role.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { SignJWT, exportJWK, generateKeyPair, type JWTPayload, type CryptoKey } from "jose";
import { ConfigError, silentLogger } from "@jota/control-plane";
import { startTestGateway, api, type TestGateway } from "./helpers/gateway";
import { assertError, assertUnchanged, credentialState } from "./helpers/auth";
import { Authenticator } from "../src/auth/authenticator";
import { JwksOidcVerifier } from "../src/auth/oidc";
import { ApiError } from "../src/http/errors";

const AUDIENCE = "jota-gateway";
const KID = "test-key-1";

describe("authentication: OIDC tokens", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let jwksServer: http.Server;
  let issuer: string;
  let key: CryptoKey;
  let jwksFetches = 0;

  before(async () => {
    const pair = await generateKeyPair("RS256", { extractable: true });
    key = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: KID, alg: "RS256", use: "sig" };
    jwksServer = http.createServer((req, res) => {
      if (req.url !== "/realms/jota/certs") return void res.writeHead(404).end();
      jwksFetches++;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => jwksServer.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}`;
    issuer = `${base}/realms/jota`;
    t = await startTestGateway({
      env: { JOTA_OIDC_ISSUER: issuer, JOTA_OIDC_AUDIENCE: AUDIENCE, JOTA_OIDC_JWKS_URL: `${base}/realms/jota/certs` },
    });
  });
  after(async () => {
    await t?.close();
    jwksServer?.close();
  });

  interface Sign {
    payload?: JWTPayload;
    iss?: string;
    aud?: string | string[];
    exp?: number;
    nbf?: number;
    with?: CryptoKey;
    kid?: string;
    alg?: string;
  }
  async function token(sub: string, o: Sign = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT({ scope: "openid profile chat", preferred_username: sub.toUpperCase(), ...o.payload })
      .setProtectedHeader({ alg: o.alg ?? "RS256", kid: o.kid ?? KID })
      .setSubject(sub)
      .setIssuer(o.iss ?? issuer)
      .setAudience(o.aud ?? AUDIENCE)
      .setIssuedAt(now - 5)
      .setExpirationTime(o.exp ?? now + 300);
    if (o.nbf !== undefined) jwt.setNotBefore(o.nbf);
    return jwt.sign(o.with ?? key);
  }
  const oidcUser = (sub: string) => t.stack.db.repos.users.findByUsername(`oidc:${sub}`);

  it("maps a good token to the user oidc:<sub>, created once, with the token's Jota scopes", async () => {
    const tok = await token("f3a1-ana", { aud: ["account", AUDIENCE] });
    const r = await api(t, tok, "POST", "/api/v1/conversations", { title: "via OIDC" });
    assert.equal(r.status, 201, r.text);
    const user = await oidcUser("f3a1-ana");
    assert.ok(user);
    assert.deepEqual([user.displayName, user.role], ["F3A1-ANA", "USER"]);
    assert.ok(jwksFetches >= 1, "the JWKS was fetched");

    const users = await t.stack.db.prisma.user.count();
    const listed = await api(t, await token("f3a1-ana"), "GET", "/api/v1/conversations");
    assert.deepEqual(listed.json.items.map((c: { id: string }) => c.id), [r.json.id]);
    assert.equal(await t.stack.db.prisma.user.count(), users, "a second token created another user");

    // Only its own conversations: another subject sees none of them.
    const other = await api(t, await token("b0b"), "GET", "/api/v1/conversations");
    assert.deepEqual(other.json.items, []);
    assertError(await api(t, await token("b0b"), "GET", `/api/v1/conversations/${r.json.id}`), 404, "not_found");

    // Scopes are the token's, intersected with Jota's: no `chat`, no chat routes.
    assertError(await api(t, await token("f3a1-ana", { payload: { scope: "openid audio" } }), "GET", "/api/v1/conversations"), 403, "forbidden");
  });

  it("refuses a wrong issuer, audience, key or algorithm, an expired or future token, with 401 and no user", async () => {
    await api(t, await token("known"), "GET", "/api/v1/keys"); // so "known" exists; refusals must not touch it either
    const before = await credentialState(t.stack);
    const other = await generateKeyPair("RS256");
    const ec = await generateKeyPair("ES256");
    const now = Math.floor(Date.now() / 1000);
    const hsKey = new TextEncoder().encode("a-shared-secret-of-at-least-32-bytes!!");
    const cases: [string, Promise<string> | string][] = [
      ["wrong issuer", token("mallory", { iss: "http://127.0.0.1:1/realms/other" })],
      ["wrong audience", token("mallory", { aud: "another-client" })],
      ["expired", token("mallory", { exp: now - 120 })],
      ["not yet valid", token("mallory", { nbf: now + 600 })],
      ["wrong key, same kid", token("mallory", { with: other.privateKey })],
      ["wrong key, unknown kid", token("mallory", { with: other.privateKey, kid: "nope" })],
      ["EC key not in the JWKS", token("mallory", { with: ec.privateKey, alg: "ES256" })],
      ["HS256 with a shared secret", new SignJWT({ sub: "mallory" }).setProtectedHeader({ alg: "HS256", kid: KID }).setIssuer(issuer).setAudience(AUDIENCE).setExpirationTime(now + 60).sign(hsKey)],
      ["alg none", `${b64({ alg: "none" })}.${b64({ sub: "mallory", iss: issuer, aud: AUDIENCE, exp: now + 60 })}.`],
      ["known subject, tampered payload", tamper(await token("known"), { sub: "mallory" })],
      ["not a JWT", "definitely.not.a-jwt"],
    ];
    for (const [what, tok] of cases) {
      const r = await api(t, await tok, "GET", "/api/v1/keys");
      assert.equal(r.status, 401, `${what}: ${r.text}`);
      assertError(r, 401, "unauthorized");
    }
    assert.equal(await oidcUser("mallory"), null);
    await assertUnchanged(t, before);
  });

  it("admin only with the jota-admin role; losing the role demotes the user", async () => {
    const scope = "openid chat admin";
    const plain = await token("carol", { payload: { scope } });
    assertError(await api(t, plain, "GET", "/api/v1/admin/users"), 403, "forbidden");
    assert.equal((await oidcUser("carol"))?.role, "USER");

    const admin = await token("carol", { payload: { scope, realm_access: { roles: ["offline_access", "jota-admin"] } } });
    const r = await api(t, admin, "GET", "/api/v1/admin/users?limit=200");
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.items.some((u: { username: string; role: string }) => u.username === "oidc:carol" && u.role === "ADMIN"));

    const topLevel = await token("dave", { payload: { scope, roles: ["jota-admin"] } });
    assert.equal((await api(t, topLevel, "GET", "/api/v1/admin/users")).status, 200);

    // The role without the admin scope: ADMIN, but the token cannot administer.
    const roleOnly = await token("carol", { payload: { scope: "chat", realm_access: { roles: ["jota-admin"] } } });
    assertError(await api(t, roleOnly, "GET", "/api/v1/admin/users"), 403, "forbidden");

    assertError(await api(t, plain, "GET", "/api/v1/admin/users"), 403, "forbidden");
    assert.equal((await oidcUser("carol"))?.role, "USER", "the identity provider's role is not followed");
  });

  it("an OIDC admin's power never outlives the role in a key: no admin key can be made, and an old one is not admin", async () => {
    const admin = await token("frank", { payload: { scope: "openid chat admin", realm_access: { roles: ["jota-admin"] } } });
    assert.equal((await api(t, admin, "GET", "/api/v1/admin/users")).status, 200);
    const frank = (await oidcUser("frank"))!;
    assert.equal(frank.role, "ADMIN");

    // Asked for by the user or by a local admin: refused, and nothing stored.
    const keysBefore = await t.stack.db.prisma.apiKey.count({ where: { userId: frank.id } });
    assertError(await api(t, admin, "POST", "/api/v1/keys", { name: "ops", scopes: ["chat", "admin"] }), 403, "forbidden");
    assertError(await api(t, t.admin.key, "POST", `/api/v1/admin/users/${frank.id}/keys`, { name: "ops", scopes: ["admin"] }), 400, "validation_error");
    assert.equal(await t.stack.db.prisma.apiKey.count({ where: { userId: frank.id } }), keysBefore);

    // Without `scopes` the key gets the token's scopes except admin, and works for chat.
    const plainKey = await api(t, admin, "POST", "/api/v1/keys", { name: "laptop" });
    assert.equal(plainKey.status, 201, plainKey.text);
    assert.deepEqual(plainKey.json.scopes, ["chat"]);

    // A key stored with `admin` (as an older release could make) is not admin while the row still says ADMIN.
    const { secret } = await t.stack.db.repos.apiKeys.create(frank.id, { name: "legacy", scopes: ["chat", "admin"] });
    assertError(await api(t, secret, "GET", "/api/v1/admin/users"), 403, "forbidden");
    assert.equal((await api(t, secret, "GET", "/api/v1/conversations")).status, 200, "its other scopes still work");
  });

  it("a disabled OIDC user's tokens are refused", async () => {
    assert.equal((await api(t, await token("erin"), "GET", "/api/v1/keys")).status, 200);
    const u = (await oidcUser("erin"))!;
    assert.equal((await api(t, t.admin.key, "POST", `/api/v1/admin/users/${u.id}/disable`)).status, 200);
    assertError(await api(t, await token("erin"), "GET", "/api/v1/keys"), 401, "unauthorized");
  });

  it("an unreachable JWKS is a 503 (the token may be fine), and OIDC without an audience does not start", async () => {
    const dead = http.createServer();
    await new Promise<void>((r) => dead.listen(0, "127.0.0.1", r));
    const deadUrl = `http://127.0.0.1:${(dead.address() as AddressInfo).port}/certs`;
    await new Promise<void>((r) => dead.close(() => r()));
    const verifier = new JwksOidcVerifier({ issuer, audience: AUDIENCE, jwksUrl: deadUrl }, t.stack.db.repos, silentLogger, { timeoutMs: 2000 });
    const auth = new Authenticator(t.stack.db.repos, silentLogger, verifier);
    const before = await credentialState(t.stack);
    await assert.rejects(auth.authenticate(`Bearer ${await token("frank")}`), (e: unknown) => {
      assert.ok(e instanceof ApiError);
      assert.deepEqual([e.status, e.code, e.headers["Retry-After"]], [503, "identity_provider_unavailable", "5"]);
      return true;
    });
    await assertUnchanged(t, before);

    assert.throws(() => new JwksOidcVerifier({ issuer, audience: "", jwksUrl: deadUrl }, t.stack.db.repos, silentLogger), ConfigError);
  });
});

function b64(v: object): string {
  return Buffer.from(JSON.stringify(v)).toString("base64url");
}

/** The token with its payload changed and its signature kept. */
function tamper(jwt: string, changes: object): string {
  const [h, p, s] = jwt.split(".");
  return `${h}.${b64({ ...JSON.parse(Buffer.from(p!, "base64url").toString()), ...changes })}.${s}`;
}
