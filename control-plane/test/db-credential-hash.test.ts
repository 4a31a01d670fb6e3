// API keys and device tokens are stored as an HMAC under the server secret:
// the stored value is not a plain hash of the credential, a credential only
// authenticates under the secret it was created under, and a row forged with
// write access to the database (but without the secret) authenticates nothing.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { MissingSecretError } from "../src/db/repositories";
import { TEST_SECRET, describeBackends } from "./helpers/postgres-backends";

const OTHER_SECRET = "another-secret-fedcba9876543210";
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

describeBackends("credential hashing", (fx) => {
  it("a key and a device token authenticate only under the secret they were created under", async () => {
    const loc = await fx.fresh();
    const first = await fx.open(loc);
    const user = await first.repos.users.create({ username: "ana" });
    const { secret: key } = await first.repos.apiKeys.create(user.id, { name: "k", scopes: ["chat"] });
    const device = await first.repos.devices.create(user.id, { name: "kitchen" });
    const { secret: token } = await first.repos.devices.issueToken(user.id, device.id);
    await first.close();

    const other = await fx.open(loc, { secret: OTHER_SECRET });
    assert.equal(await other.repos.apiKeys.authenticate(key), null);
    assert.equal(await other.repos.devices.authenticate(token), null);
    await other.close();

    const same = await fx.open(loc, { secret: TEST_SECRET });
    assert.equal((await same.repos.apiKeys.authenticate(key))?.user.id, user.id);
    assert.equal((await same.repos.devices.authenticate(token))?.device.id, device.id);
  });

  it("stores neither the secret nor its SHA-256, and the stored values differ per server secret", async () => {
    const db = await fx.openFresh();
    const user = await db.repos.users.create({ username: "ana" });
    const { key, secret } = await db.repos.apiKeys.create(user.id, { name: "k", scopes: [] });
    const device = await db.repos.devices.create(user.id, { name: "kitchen" });
    const { token, secret: tokenSecret } = await db.repos.devices.issueToken(user.id, device.id);

    const keyRow = await db.prisma.apiKey.findUniqueOrThrow({ where: { id: key.id } });
    const tokenRow = await db.prisma.deviceToken.findUniqueOrThrow({ where: { id: token.id } });
    for (const [row, s] of [
      [keyRow, secret],
      [tokenRow, tokenSecret],
    ] as const) {
      assert.match(row.hash, /^[0-9a-f]{64}$/);
      assert.notEqual(row.hash, sha256(s));
      assert.ok(!JSON.stringify(row).includes(s.slice(row.prefix.length + 1)), "the secret part is stored");
      assert.ok(s.startsWith(`${row.prefix}_`));
    }

    // The same credential hashed under another server secret gives another value.
    const other = await fx.openFresh({ secret: OTHER_SECRET });
    const u2 = await other.repos.users.create({ username: "ana" });
    const { key: k2 } = await other.repos.apiKeys.create(u2.id, { name: "k", scopes: [] });
    const row2 = await other.prisma.apiKey.findUniqueOrThrow({ where: { id: k2.id } });
    await other.prisma.apiKey.update({ where: { id: k2.id }, data: { hash: keyRow.hash } });
    assert.equal(await other.repos.apiKeys.authenticate(secret), null, "a hash copied across secrets authenticates");
    assert.notEqual(row2.hash, keyRow.hash);
  });

  it("a row forged with a plain SHA-256 of a chosen secret does not authenticate", async () => {
    const db = await fx.openFresh();
    const user = await db.repos.users.create({ username: "mallory-target", role: "ADMIN" });
    const chosen = "jota_k_0123456789ab_chosen-by-someone-with-database-access-000";
    await db.prisma.apiKey.create({
      data: { userId: user.id, name: "forged", prefix: "jota_k_0123456789ab", hash: sha256(chosen), scopes: ["admin"] },
    });
    assert.equal(await db.repos.apiKeys.authenticate(chosen), null);
    assert.equal((await db.prisma.apiKey.findFirstOrThrow({ where: { name: "forged" } })).lastUsedAt, null);
  });

  it("without a server secret, credentials are refused loudly and nothing is stored", async () => {
    const db = await fx.openFresh({ secret: undefined });
    const user = await db.repos.users.create({ username: "ana" });
    await assert.rejects(db.repos.apiKeys.create(user.id, { name: "k", scopes: [] }), MissingSecretError);
    await assert.rejects(db.repos.apiKeys.authenticate("jota_k_0123456789ab_x"), MissingSecretError);
    const device = await db.repos.devices.create(user.id, { name: "kitchen" });
    await assert.rejects(db.repos.devices.issueToken(user.id, device.id), MissingSecretError);
    assert.equal(await db.prisma.apiKey.count(), 0);
    assert.equal(await db.prisma.deviceToken.count(), 0);
  });
});
