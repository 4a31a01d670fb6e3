// `npm run jota -- …` end to end, as separate processes on a temporary
// JOTA_DATA_DIR: users, keys and devices made by the CLI (with the server
// secret it generates there) authenticate against a gateway started later on
// the same folder; usage errors exit 2 with the usage text before touching
// anything; failures exit 1; and while the server holds the embedded
// database, the CLI refuses with a message that points at the admin API.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { repoRoot } from "@jota/control-plane/config/paths";
import { startTestGateway, api, type TestGateway } from "./helpers/gateway";
import { runCli } from "../src/cli";

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of a plain shell: no JOTA_* or DATABASE_URL from this process, only the data folder. */
function cliEnv(dataDir: string): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("JOTA_") && k !== "DATABASE_URL"));
  return { ...env, JOTA_DATA_DIR: dataDir };
}

/** `npm run jota -- <args>` as its own process (node with tsx, as the script runs it, without npm's start-up). */
function jota(dataDir: string, ...args: string[]): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ["--import", "tsx", "gateway/src/cli.ts", ...args], { cwd: repoRoot, env: cliEnv(dataDir), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    p.once("error", reject);
    p.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The same command in this process: quicker, for the matrices of refusals (the exit codes are pinned by spawned runs too). */
async function jotaHere(dataDir: string, ...args: string[]): Promise<Ran> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(args, cliEnv(dataDir), { out: (s) => (stdout += s), err: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

const KEY_LINE = /^jota_k_[0-9a-f]{12}_[A-Za-z0-9_-]{43}\n$/;
const TOKEN_LINE = /^jota_d_[0-9a-f]{12}_[A-Za-z0-9_-]{43}\n$/;

describe("the jota CLI", function () {
  this.timeout(600_000);
  let dataDir: string;
  let t: TestGateway | undefined;

  before(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "jota-cli-"));
  });
  after(async () => {
    await t?.close(); // removes dataDir too
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("usage errors exit 2 with the usage text, before any database is opened", async () => {
    const spawned = await jota(dataDir, "frob");
    assert.equal(spawned.code, 2, spawned.stderr);
    assert.match(spawned.stderr, /unknown command 'frob'[\s\S]*usage: npm run jota -- <command>/);
    const cases: [string[], RegExp][] = [
      [[], /^usage:/],
      [["users", "create"], /takes 1 argument, got 0/],
      [["users", "create", "Not Valid"], /username: use 1\.\.64 lowercase/],
      [["users", "create", "ana", "extra"], /takes 1 argument, got 2/],
      [["keys", "create"], /--user <username> is required/],
      [["keys", "create", "--user", "ana", "--scopes", "chat,root"], /--scopes/],
      [["keys", "list", "--user", "ana", "--bogus"], /Unknown option '--bogus'/],
      [["keys", "revoke", "not-an-id"], /'not-an-id' is not a key id/],
      [["devices", "create", "--user", "ana", "Hall", "--kind", "Big Box"], /--kind/],
    ];
    for (const [args, message] of cases) {
      const r = await jotaHere(dataDir, ...args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /usage: npm run jota -- <command>/);
      assert.equal(r.stdout, "");
    }
    assert.deepEqual(fs.readdirSync(dataDir), [], "a usage error touched the data folder");
  });

  let anaKey = "";
  let revokedKey = "";
  let deviceToken = "";

  it("creates users, keys and a device; prints each secret once, alone on stdout", async () => {
    const created = await jota(dataDir, "users", "create", "ana", "--display-name", "Ana");
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^created user ana \(USER\) [0-9a-f-]{36}\n$/);
    assert.ok(fs.existsSync(path.join(dataDir, "secret")), "the server secret was not generated");
    assert.equal((await jotaHere(dataDir, "users", "create", "boss", "--admin")).code, 0);

    const key = await jota(dataDir, "keys", "create", "--user", "ana", "--name", "laptop", "--scopes", "chat,memory");
    assert.equal(key.code, 0, key.stderr);
    assert.match(key.stdout, KEY_LINE);
    assert.match(key.stderr, /shown only now/);
    anaKey = key.stdout.trim();

    const doomed = await jotaHere(dataDir, "keys", "create", "--user", "ana", "--name", "doomed");
    revokedKey = doomed.stdout.trim();
    const dev = await jota(dataDir, "devices", "create", "--user", "ana", "kitchen", "--kind", "satellite");
    assert.equal(dev.code, 0, dev.stderr);
    assert.match(dev.stdout, TOKEN_LINE);
    deviceToken = dev.stdout.trim();

    const list = await jota(dataDir, "keys", "list", "--user", "ana");
    assert.equal(list.code, 0);
    const lines = list.stdout.trim().split("\n");
    assert.equal(lines.length, 3, list.stdout);
    assert.ok(lines.some((l) => l.includes(anaKey.slice(0, 19)) && l.includes("chat,memory") && l.includes("active")));
    assert.ok(!list.stdout.includes(anaKey.slice(20)), "keys list shows a secret");
    const id = lines.find((l) => l.includes(revokedKey.slice(0, 19)))!.split(/\s+/)[0]!;

    const revoked = await jota(dataDir, "keys", "revoke", id);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, new RegExp(`^revoked API key ${id}`));

    const users = await jotaHere(dataDir, "users", "list");
    assert.deepEqual(users.stdout.trim().split("\n").slice(1).map((l) => l.split(/\s+/).slice(1, 3)), [["ana", "USER"], ["boss", "ADMIN"]]);
  });

  it("failures exit 1 with one line saying what is wrong, and change nothing", async () => {
    const cases: [string[], RegExp][] = [
      [["users", "create", "ana"], /username ana is taken/],
      [["keys", "create", "--user", "nobody"], /no user named 'nobody'/],
      [["keys", "revoke", "00000000-0000-4000-8000-000000000000"], /no API key/],
      [["devices", "create", "--user", "ana", "kitchen"], /kitchen exists/],
    ];
    for (const [args, message] of cases) {
      const r = await jotaHere(dataDir, ...args);
      assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.ok(!/usage:/.test(r.stderr), "a failure is not a usage error");
      assert.equal(r.stdout, "");
    }
    const list = await jota(dataDir, "keys", "list", "--user", "ana");
    assert.match(list.stdout, /revoked/);
    assert.equal(list.stdout.trim().split("\n").length, 3, "a failed command created a key");
    const spawned = await jota(dataDir, "keys", "create", "--user", "nobody");
    assert.equal(spawned.code, 1, spawned.stderr);
  });

  it("what the CLI made authenticates against a server started on the same folder afterwards", async () => {
    // No JOTA_SECRET: the server reads the secret the CLI generated, as `npm start` would.
    t = await startTestGateway({ dataDir, env: { JOTA_SECRET: "" } });
    assert.equal(t.stack.secret, fs.readFileSync(path.join(dataDir, "secret"), "utf8").trim());

    const mine = await api(t, anaKey, "GET", "/api/v1/keys");
    assert.equal(mine.status, 200, mine.text);
    assert.deepEqual(mine.json.items.map((k: { name: string; status: string }) => [k.name, k.status]).sort(), [["doomed", "revoked"], ["laptop", "active"]]);
    assert.equal((await api(t, anaKey, "POST", "/api/v1/conversations", { title: "from the CLI's key" })).status, 201);
    assert.equal((await api(t, deviceToken, "GET", "/api/v1/conversations")).status, 200);
    assert.equal((await api(t, revokedKey, "GET", "/api/v1/keys")).status, 401);
  });

  it("while the server holds the embedded database, refuses with exit 1 and points at the admin API", async () => {
    const r = await jota(dataDir, "users", "list");
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /in use by process \d+/);
    assert.match(r.stderr, /admin API/);
    assert.match(r.stderr, /\/api\/v1\/admin\/users/);
    assert.equal(r.stdout, "");
    assert.equal((await api(t!, anaKey, "GET", "/api/v1/keys")).status, 200, "the server was disturbed");
  });
});
