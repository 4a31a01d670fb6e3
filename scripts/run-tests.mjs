#!/usr/bin/env node
// Runs every suite after set-up: the type check, the C++ tests (ctest) and the
// TypeScript tests (mocha), streaming their output, then prints one summary
// line in the form CI reads: "Summary: N passed, N failed, N skipped".
// Exits non-zero if anything failed.
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const buildDir = process.env.JOTA_BUILD_DIR ?? path.join(root, "build");
const bin = (name) => path.join(root, "node_modules", ".bin", name);

function run(cmd, args) {
  return new Promise((resolve) => {
    let out = "";
    const child = spawn(cmd, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    const tee = (dst) => (chunk) => {
      out += chunk;
      if (out.length > 1 << 20) out = out.slice(-(1 << 19)); // only the tail is parsed
      dst.write(chunk);
    };
    child.stdout.on("data", tee(process.stdout));
    child.stderr.on("data", tee(process.stderr));
    child.on("close", (code) => resolve({ code: code ?? 1, out }));
    child.on("error", (err) => resolve({ code: 127, out: String(err) }));
  });
}

const totals = { passed: 0, failed: 0, skipped: 0 };
const suites = [];

function record(name, counts, code) {
  // A suite that exits non-zero without failed tests (crash, build error) still fails.
  if (code !== 0 && counts.failed === 0) counts.failed = 1;
  for (const k of Object.keys(totals)) totals[k] += counts[k];
  suites.push({ name, ...counts });
}

// 1. Type check, one project at a time (each counts as one check).
for (const project of ["control-plane", "gateway", "engines/tests", "scripts"]) {
  console.log(`\n=== tsc --noEmit -p ${project}`);
  const r = await run(bin("tsc"), ["-p", project]);
  record(`typecheck ${project}`, { passed: r.code === 0 ? 1 : 0, failed: r.code === 0 ? 0 : 1, skipped: 0 }, r.code);
}

// 2. C++ tests.
{
  console.log("\n=== ctest");
  const r = await run("ctest", ["--test-dir", buildDir, "--output-on-failure", "--timeout", "120"]);
  const m = r.out.match(/(\d+)% tests passed, (\d+) tests? failed out of (\d+)/);
  const skipped = (r.out.match(/\*\*\*Skipped|Not Run/g) ?? []).length;
  const total = m ? Number(m[3]) : 0;
  const failed = m ? Number(m[2]) : 0;
  if (!m) console.log("ctest printed no summary: counted as a failure");
  record("ctest", { passed: Math.max(0, total - failed - skipped), failed, skipped }, m ? r.code : 1);
}

// 3. TypeScript unit and integration tests.
{
  console.log("\n=== mocha");
  // Every suite, one file per behaviour (a focused run is `npx mocha FILE`).
  const specs = ["scripts/test/**/*.test.ts", "engines/tests/**/*.test.ts", "control-plane/test/**/*.test.ts", "gateway/test/**/*.test.ts"];
  const r = await run(bin("mocha"), specs);
  const num = (re) => Number(r.out.match(re)?.[1] ?? 0);
  const passing = num(/(\d+) passing/);
  const failing = num(/(\d+) failing/);
  const pending = num(/(\d+) pending/);
  if (passing + failing + pending === 0) console.log("mocha ran no test: counted as a failure");
  record("mocha", { passed: passing, failed: failing, skipped: pending }, passing + failing + pending ? r.code : 1);
}

console.log("\n=== results");
for (const s of suites) console.log(`  ${s.name.padEnd(28)} ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped`);
console.log(`Summary: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(totals.failed > 0 ? 1 : 0);
