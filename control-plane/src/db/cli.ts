// The database the Prisma CLI works on (prisma.config.ts): the same one the
// application uses, from the same settings. On the embedded database the CLI
// takes the directory's lock, so it refuses to run while a server has it open.
import { loadConfig } from "../config/config";
import { createLogger } from "../log";
import { pgliteAdapter, postgresAdapter, type AdapterFactory } from "./adapters";
import { AUTO_SHARED_BUFFERS_MIN_MB, embeddedDir, openEmbedded } from "./embedded";
import { createPool } from "./postgres";

let adapter: Promise<AdapterFactory> | undefined;

/** Memoised: the CLI asks for the adapter more than once per command, and a data directory must be opened once. */
export function cliAdapter(env: Record<string, string | undefined>): Promise<AdapterFactory> {
  adapter ??= (async () => {
    const config = loadConfig(env);
    if (config.databaseUrl) return postgresAdapter(createPool(config.databaseUrl, 2));
    // A short command: the smallest cache (the server sizes its own, embedded.ts).
    const handle = await openEmbedded(embeddedDir(config), createLogger("warn"), { sharedBuffers: AUTO_SHARED_BUFFERS_MIN_MB });
    return pgliteAdapter(handle.pglite);
  })();
  return adapter;
}
