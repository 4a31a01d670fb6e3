// The first start of an empty database: there is no user to hold a key, and
// no key to create one with. So, as Jenkins and Grafana do, the first start
// creates the user "admin" and one admin API key, writes the key to
// JOTA_DATA_DIR/admin-key (mode 0600, shown nowhere else) and logs where it
// is. Later starts find the user and do nothing.
import fs from "node:fs";
import path from "node:path";
import type { Logger } from "@jota/control-plane";
import { ALL_SCOPES } from "./principal";
import type { Stack } from "../stack";

export async function bootstrapAdmin(stack: Stack, log: Logger): Promise<void> {
  const { repos } = stack.db;
  if (await repos.users.findByUsername("admin")) return;
  let user;
  try {
    user = await repos.users.create({ username: "admin", displayName: "Administrator", role: "ADMIN" });
  } catch {
    return; // another process created it first
  }
  const { secret } = await repos.apiKeys.create(user.id, { name: "bootstrap", scopes: [...ALL_SCOPES] });
  const file = path.join(stack.config.dataDir, "admin-key");
  fs.writeFileSync(file, secret + "\n", { mode: 0o600 });
  log.warn("created the user 'admin' and its first API key", { keyFile: file, hint: "keep it; create others with `npm run jota -- keys create`" });
}
