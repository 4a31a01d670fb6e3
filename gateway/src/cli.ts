// `npm run jota -- <command>`: the operator's tool for users, API keys and
// devices, on the same database as `npm start` (same environment, same
// server secret) without starting engines or a server.
//
// The embedded database allows one process at a time, so while a server
// runs on the same JOTA_DATA_DIR the CLI refuses with a message pointing at
// the admin API (/api/v1/admin/...), which does the same through the server.
// On PostgreSQL (DATABASE_URL) both run side by side.
//
// Output: secrets (API keys, device tokens) go alone to stdout, one line, so
// `KEY=$(npm run -s jota -- keys create --user ana)` captures just the key;
// what was done is said on stderr. Lists are tables on stdout.
// Exit codes: 0 done; 1 the operation failed (unknown user or key, name
// taken, database in use); 2 usage error (the usage text is printed).
import { pathToFileURL } from "node:url";
import { parseArgs, type ParseArgsConfig } from "node:util";
import {
  ConfigError,
  ConflictError,
  DataDirLockedError,
  NotFoundError,
  createLogger,
  databaseOptions,
  loadConfig,
  openDatabase,
  type Database,
} from "@jota/control-plane";
import { runWorker } from "@jota/control-plane/worker";
import { z } from "zod";
import { oidcManaged } from "./auth/authenticator";
import { ALL_SCOPES, DEFAULT_SCOPES } from "./auth/principal";
import { DeviceKind, Username } from "./api/admin";
import { Name, Scopes } from "./api/keys";
import { serverSecret } from "./stack";

const USAGE = `usage: npm run jota -- <command>

  users create <username> [--admin] [--display-name <text>]
  users list
  keys create --user <username> [--name <name>] [--scopes ${ALL_SCOPES.join(",")}]
                  prints the key once (stdout); default scopes ${DEFAULT_SCOPES.join(",")}
  keys list --user <username>
  keys revoke <key-id>
  devices create --user <username> <device-name> [--kind <kind>]
                  registers the device and prints its first token once (stdout)
  devices list --user <username>
  worker          runs background jobs (document ingestion) until Ctrl-C; needs REDIS_URL

Uses the database of JOTA_DATA_DIR (or DATABASE_URL) and the server secret
(JOTA_SECRET or JOTA_DATA_DIR/secret), like \`npm start\`.
Exit codes: 0 done, 1 failed, 2 usage error.
`;

class UsageError extends Error {}
/** A failure to report in one line (exit 1), not a crash. */
class Failure extends Error {}

type Out = { out: (s: string) => void; err: (s: string) => void };

type Args = { values: Record<string, string | boolean | undefined>; positionals: string[] };
type Run = (db: Database, io: Out) => Promise<void>;

interface Command {
  options: NonNullable<ParseArgsConfig["options"]>;
  positionals: number;
  /** Checks the arguments (UsageError) before the database is opened, and returns the work. */
  prepare(args: Args): Run;
}

function valid<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new UsageError(`${what}: ${r.error.issues[0]!.message}`);
  return r.data;
}

function required(v: string | boolean | undefined, what: string): string {
  if (typeof v !== "string" || v === "") throw new UsageError(`${what} is required`);
  return v;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function userNamed(db: Database, username: string) {
  const u = await db.repos.users.findByUsername(username);
  if (!u) throw new Failure(`no user named '${username}' (\`npm run jota -- users list\` shows them)`);
  return u;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n") + "\n";
}

const when = (d: Date | null) => (d ? d.toISOString().replace(/\.\d+Z$/, "Z") : "-");

const COMMANDS: Record<string, Command> = {
  "users create": {
    options: { admin: { type: "boolean" }, "display-name": { type: "string" } },
    positionals: 1,
    prepare({ values, positionals }) {
      const username = valid(Username, positionals[0], "username");
      const displayName = values["display-name"] === undefined ? undefined : valid(Name, values["display-name"], "--display-name");
      return async (db, io) => {
        const u = await db.repos.users.create({ username, displayName, role: values.admin ? "ADMIN" : "USER" });
        io.out(`created user ${u.username} (${u.role}) ${u.id}\n`);
        io.err(`next: npm run jota -- keys create --user ${u.username}\n`);
      };
    },
  },
  "users list": {
    options: {},
    positionals: 0,
    prepare: () => async (db, io) => {
      const rows = [["ID", "USERNAME", "ROLE", "STATUS", "CREATED"]];
      let cursor: string | undefined;
      do {
        const page = await db.repos.users.list({ limit: 200, cursor });
        for (const u of page.items) rows.push([u.id, u.username, u.role, u.disabledAt ? "disabled" : "active", when(u.createdAt)]);
        cursor = page.nextCursor;
      } while (cursor);
      io.out(table(rows));
    },
  },
  "keys create": {
    options: { user: { type: "string" }, name: { type: "string" }, scopes: { type: "string" } },
    positionals: 0,
    prepare({ values }) {
      const name = valid(Name, values.name ?? "cli", "--name");
      const scopes =
        values.scopes === undefined ? [...DEFAULT_SCOPES] : valid(Scopes, String(values.scopes).split(",").map((s) => s.trim()), "--scopes");
      const username = required(values.user, "--user <username>");
      return async (db, io) => {
        const u = await userNamed(db, username);
        if (scopes.includes("admin") && u.role !== "ADMIN") throw new UsageError(`--scopes: 'admin' is only for keys of ADMIN users; ${u.username} is a USER`);
        if (scopes.includes("admin") && oidcManaged(u.username))
          throw new UsageError(`--scopes: 'admin' is not given to keys of OIDC users: ${u.username}'s admin role comes from the identity provider with each token`);
        const { key, secret } = await db.repos.apiKeys.create(u.id, { name, scopes });
        io.err(`API key ${key.id} ("${key.name}") for ${u.username}, scopes ${scopes.join(",")}. It is shown only now: store it.\n`);
        io.out(`${secret}\n`);
      };
    },
  },
  "keys list": {
    options: { user: { type: "string" } },
    positionals: 0,
    prepare({ values }) {
      const username = required(values.user, "--user <username>");
      return async (db, io) => {
        const u = await userNamed(db, username);
        const rows = [["ID", "NAME", "PREFIX", "SCOPES", "STATUS", "CREATED", "LAST USED"]];
        let cursor: string | undefined;
        do {
          const page = await db.repos.apiKeys.list(u.id, { limit: 200, cursor });
          for (const k of page.items) {
            const status = k.revokedAt ? "revoked" : k.expiresAt && k.expiresAt <= new Date() ? "expired" : "active";
            rows.push([k.id, k.name, k.prefix, k.scopes.join(",") || "-", status, when(k.createdAt), when(k.lastUsedAt)]);
          }
          cursor = page.nextCursor;
        } while (cursor);
        io.out(table(rows));
      };
    },
  },
  "keys revoke": {
    options: {},
    positionals: 1,
    prepare({ positionals }) {
      const id = positionals[0]!;
      if (!UUID.test(id)) throw new UsageError(`'${id}' is not a key id (\`keys list --user <username>\` shows them)`);
      return async (db, io) => {
        const owner = await db.repos.apiKeys.ownerOf(id);
        if (!owner) throw new Failure(`no API key ${id} (\`npm run jota -- keys list --user <username>\` shows the ids)`);
        const key = await db.repos.apiKeys.revoke(owner, id);
        io.out(`revoked API key ${key.id} ("${key.name}", ${key.prefix})\n`);
      };
    },
  },
  "devices create": {
    options: { user: { type: "string" }, kind: { type: "string" } },
    positionals: 1,
    prepare({ values, positionals }) {
      const name = valid(Name, positionals[0], "device name");
      const kind = values.kind === undefined ? undefined : valid(DeviceKind, values.kind, "--kind");
      const username = required(values.user, "--user <username>");
      return async (db, io) => {
        const u = await userNamed(db, username);
        const device = await db.repos.devices.create(u.id, { name, kind });
        const { secret } = await db.repos.devices.issueToken(u.id, device.id);
        io.err(`device ${device.id} ("${device.name}", ${device.kind}) for ${u.username}; its token is shown only now: store it on the device.\n`);
        io.out(`${secret}\n`);
      };
    },
  },
  "devices list": {
    options: { user: { type: "string" } },
    positionals: 0,
    prepare({ values }) {
      const username = required(values.user, "--user <username>");
      return async (db, io) => {
        const u = await userNamed(db, username);
        const rows = [["ID", "NAME", "KIND", "STATUS", "CREATED", "LAST SEEN"]];
        let cursor: string | undefined;
        do {
          const page = await db.repos.devices.list(u.id, { limit: 200, cursor });
          for (const d of page.items) rows.push([d.id, d.name, d.kind, d.revokedAt ? "revoked" : "active", when(d.createdAt), when(d.lastSeenAt)]);
          cursor = page.nextCursor;
        } while (cursor);
        io.out(table(rows));
      };
    },
  },
};

export async function runCli(argv: string[], env: NodeJS.ProcessEnv, io: Out): Promise<number> {
  const fail = (code: number, msg: string, usage = false) => {
    io.err(`jota: ${msg}\n${usage ? `\n${USAGE}` : ""}`);
    return code;
  };
  if (argv.length === 0 || argv[0] === "help" || argv.includes("--help") || argv.includes("-h")) {
    (argv.length === 0 ? io.err : io.out)(USAGE);
    return argv.length === 0 ? 2 : 0;
  }
  // The worker is a long-running process of its own (control-plane/src/worker.ts), not a database operation.
  if (argv.length === 1 && argv[0] === "worker") return runWorker(env, io.err);
  const name = argv.slice(0, 2).join(" ");
  const cmd = COMMANDS[name];
  if (!cmd) return fail(2, `unknown command '${name}'`, true);

  let run: Run;
  try {
    // No option is declared `multiple`, so no value is an array.
    const args = parseArgs({ args: argv.slice(2), options: cmd.options, allowPositionals: true, strict: true }) as Args;
    if (args.positionals.length !== cmd.positionals)
      throw new UsageError(`'${name}' takes ${cmd.positionals} argument${cmd.positionals === 1 ? "" : "s"}, got ${args.positionals.length}`);
    run = cmd.prepare(args);
  } catch (err) {
    return fail(2, (err as Error).message, true);
  }

  let config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return fail(2, `configuration error: ${err.message}`);
    throw err;
  }
  // The database's own progress lines ("database ready") are noise here.
  const log = createLogger(config.logLevel === "debug" ? "debug" : "warn", { component: "cli" });
  let db: Database;
  try {
    db = await openDatabase({ ...databaseOptions(config, log), secret: serverSecret(config) });
  } catch (err) {
    if (err instanceof DataDirLockedError) {
      const who = err.holder ? `process ${err.holder.pid} on ${err.holder.host}` : "another process";
      return fail(
        1,
        `the embedded database of ${config.dataDir} is in use by ${who} (a running Jota server?), and it allows one process at a time. ` +
          `While the server runs, use its admin API instead (e.g. POST /api/v1/admin/users/{id}/keys with an admin key; ` +
          `the first one is in ${config.dataDir}/admin-key), or stop the server and run this again.`,
      );
    }
    throw err;
  }
  try {
    await run(db, io);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) return fail(2, err.message, true);
    if (err instanceof Failure || err instanceof ConflictError || err instanceof NotFoundError) return fail(1, err.message);
    throw err;
  } finally {
    // Nothing else keeps the event loop alive while the database closes (the
    // lock's helper process is unref'd, see control-plane/src/db/lock.ts):
    // without this the process could end mid-close, with PGlite's exit code.
    const keepAlive = setInterval(() => {}, 60_000);
    try {
      await db.close();
    } finally {
      clearInterval(keepAlive);
    }
  }
}

// Run only as a program, not when a test imports runCli.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // process.exit, not process.exitCode: PGlite's WASM runtime sets exitCode to 0 when it shuts down.
  runCli(process.argv.slice(2), process.env, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) }).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`jota: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
