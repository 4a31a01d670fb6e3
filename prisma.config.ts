// Configuration of the Prisma CLI, run from the repository root
// (`npx prisma <command>`). It works offline: `engine: "js"` drives Prisma's
// WASM schema engine through a driver adapter instead of the native engine
// that Prisma would download. The adapter opens the database the application
// uses: DATABASE_URL, else the embedded one in JOTA_DATA_DIR/db (whose lock
// makes the CLI refuse while a server has it open). See prisma/README.md.
import { defineConfig } from "prisma/config";
import { cliAdapter } from "./control-plane/src/db/cli";

const env = { ...process.env };
// The schema's `url = env("DATABASE_URL")` must resolve for the CLI to read
// the schema at all (otherwise it falls back to downloading a native engine),
// though nothing connects with it.
process.env.DATABASE_URL ||= "postgresql://embedded.invalid/unused";

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  adapter: () => cliAdapter(env),
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
});
