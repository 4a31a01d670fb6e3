// The README's configuration table is the list of variables Jota really reads.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { ENV_VARS } from "../../control-plane/src/config/config";
import { repoRoot } from "../../control-plane/src/config/paths";

describe("README", () => {
  const readme = fs.readFileSync(path.join(repoRoot, "README.md"), "utf8");
  const rows = new Map(
    [...readme.matchAll(/^\| `([A-Z0-9_]+)` \| ([^|]*) \|/gm)].map((m) => [m[1]!, m[2]!.trim()]),
  );

  it("documents every environment variable with its default", () => {
    for (const v of ENV_VARS) {
      assert.ok(rows.has(v.name), `README lacks ${v.name}`);
      const shown = rows.get(v.name)!.replace(/`/g, "");
      assert.equal(shown, v.default === "" ? "(empty)" : v.default, `${v.name} default in README`);
    }
  });

  it("documents no variable that the code does not read", () => {
    const known = new Set(ENV_VARS.map((v) => v.name));
    for (const name of rows.keys()) assert.ok(known.has(name), `README documents unknown variable ${name}`);
  });

  it("gives the two commands, and .ci/run runs exactly the test one", () => {
    assert.match(readme, /npm start/);
    assert.match(readme, /npm test/);
    const ci = fs.readFileSync(path.join(repoRoot, ".ci/run"), "utf8");
    assert.match(ci, /^exec npm test$/m);
  });
});
