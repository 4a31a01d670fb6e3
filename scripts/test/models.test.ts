// The generated test models are deterministic: the same seed gives the same
// bytes (pinned in scripts/models/checksums.json) on any machine.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { repoRoot, testModelsDir } from "../../control-plane/src/config/paths";

const generator = path.join(repoRoot, "scripts/models/generate_test_models.py");
const pinned = JSON.parse(fs.readFileSync(path.join(repoRoot, "scripts/models/checksums.json"), "utf8")) as {
  models: Record<string, { sha256: string; bytes: number }>;
};
const sha256 = (file: string) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
const python = process.env.JOTA_PYTHON ?? "python3";

function generate(out: string, ...args: string[]) {
  const r = spawnSync(python, [generator, "--out", out, ...args], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

describe("generated test models", function () {
  this.timeout(180_000);
  let tmp: string;
  before(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), "jota-models-"))));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it("pins all five models", () => {
    assert.deepEqual(Object.keys(pinned.models).sort(), ["bench-chat.gguf", "tiny-chat.gguf", "tiny-embed.gguf", "tiny-mamba.gguf", "tiny-whisper.bin"]);
  });

  it("set-up's models match the pinned checksums", () => {
    for (const [name, want] of Object.entries(pinned.models)) {
      const file = path.join(testModelsDir, name);
      assert.equal(fs.statSync(file).size, want.bytes, name);
      assert.equal(sha256(file), want.sha256, name);
    }
  });

  it("generating again from scratch gives byte-identical files", () => {
    generate(tmp);
    for (const [name, want] of Object.entries(pinned.models)) assert.equal(sha256(path.join(tmp, name)), want.sha256, name);
  });

  it("a second run skips models that are present and valid", () => {
    const out = generate(tmp);
    assert.equal((out.match(/^present /gm) ?? []).length, 5, out);
  });

  it("another seed gives other weights", () => {
    const other = path.join(tmp, "other");
    generate(other, "--only", "tiny-embed.gguf", "--seed", "99", "--force");
    assert.notEqual(sha256(path.join(other, "tiny-embed.gguf")), pinned.models["tiny-embed.gguf"]!.sha256);
  });
});
