// The C++ build: both engines, their tests and the reference tools from the
// same sources; the engines' command line is documented and strict.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { defaultBuildDir } from "../../control-plane/src/config/paths";

const bin = (name: string) => path.join(process.env.JOTA_BUILD_DIR ?? defaultBuildDir, "bin", name);

describe("C++ build", () => {
  for (const name of ["jota-inference", "jota-transcription"]) {
    it(`${name} is built and --help lists every flag with its environment variable`, () => {
      const r = spawnSync(bin(name), ["--help"], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      for (const flag of ["--listen", "--token", "--probe", "--model", "--threads", "--exit-with-parent", "JOTA_ENGINE_TOKEN"])
        assert.ok(r.stdout.includes(flag), `${name} --help lacks ${flag}`);
    });

    it(`${name} rejects bad flags with exit code 2 and the reason`, () => {
      const r = spawnSync(bin(name), ["--threads", "zero"], { encoding: "utf8" });
      assert.equal(r.status, 2);
      assert.match(r.stderr, /--threads \(flag\): 'zero' is not an integer/);
      const u = spawnSync(bin(name), ["--bogus"], { encoding: "utf8" });
      assert.equal(u.status, 2);
      assert.match(u.stderr, /unknown flag --bogus/);
    });
  }

  it("jota-inference documents its engine-specific flags", () => {
    const r = spawnSync(bin("jota-inference"), ["--help"], { encoding: "utf8" });
    for (const flag of ["--embed-model", "--ctx-size", "--slots", "--batch-size", "--state-dir", "--queue-max"])
      assert.ok(r.stdout.includes(flag), `--help lacks ${flag}`);
  });

  it("--probe against nothing fails fast with exit code 1", () => {
    const t0 = Date.now();
    const r = spawnSync(bin("jota-inference"), ["--probe", "127.0.0.1:1"], { encoding: "utf8" });
    assert.equal(r.status, 1);
    assert.ok(Date.now() - t0 < 10_000);
  });

  // Built from the same llama.cpp / whisper.cpp sources, for fidelity tests and benchmarks.
  for (const tool of ["llama-bench", "llama-completion", "llama-simple", "llama-embedding", "llama-server", "llama-tokenize", "whisper-cli"]) {
    it(`reference tool ${tool} is built and runs`, () => {
      assert.ok(fs.existsSync(bin(tool)), `${bin(tool)} missing`);
      const r = spawnSync(bin(tool), ["--help"], { encoding: "utf8", timeout: 20_000 });
      assert.equal(r.error, undefined, String(r.error));
      assert.ok(`${r.stdout}${r.stderr}`.length > 100, `${tool} --help printed nothing`);
    });
  }
});
