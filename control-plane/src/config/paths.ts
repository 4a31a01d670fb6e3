// Where the repository's build outputs and models live, resolved from this
// file so every entry point (start, worker, tests, benchmarks) agrees.
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const defaultBuildDir = path.join(repoRoot, "build");
export const testModelsDir = path.join(repoRoot, "models", "test");
