// The pinned engine sources: fetched from npm tarballs, checksums verified.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { repoRoot } from "../../control-plane/src/config/paths";

const thirdParty = path.join(repoRoot, "third_party");
const sha1 = (file: string) => crypto.createHash("sha1").update(fs.readFileSync(file)).digest("hex");
const script = fs.readFileSync(path.join(repoRoot, "scripts/fetch-sources.sh"), "utf8");
const pinned = (name: string) => script.match(new RegExp(`${name}_SHA1="([0-9a-f]{40})"`))![1]!;

describe("pinned engine sources", () => {
  it("the tarballs match the pinned sha1 checksums", () => {
    assert.equal(pinned("LLAMA"), "e908932762f21939024263d58f1d6dc3e88b23e6");
    assert.equal(pinned("WHISPER"), "10caee39336d36663fc5dbaf696343350236c5c8");
    assert.equal(sha1(path.join(thirdParty, ".tarballs/node-llama-cpp-3.22.1.tgz")), pinned("LLAMA"));
    assert.equal(sha1(path.join(thirdParty, ".tarballs/nodejs-whisper-0.3.1.tgz")), pinned("WHISPER"));
  });

  it("llama.cpp is the pinned commit, unmodified", () => {
    const dir = path.join(thirdParty, "llama.cpp");
    const head = execFileSync("git", ["-C", dir, "rev-parse", "HEAD"], { encoding: "utf8" }).trim();
    assert.equal(head, "de3ff815ea7d559ee917f063901b8986f038abc6");
    const dirty = execFileSync("git", ["-C", dir, "status", "--porcelain", "--untracked-files=no"], { encoding: "utf8" });
    assert.equal(dirty, "", "llama.cpp checkout has local modifications");
  });

  it("whisper.cpp is v1.9.1 with the jfk.wav sample", () => {
    const dir = path.join(thirdParty, "whisper.cpp");
    const cmake = fs.readFileSync(path.join(dir, "CMakeLists.txt"), "utf8");
    assert.match(cmake, /project\("whisper\.cpp" VERSION 1\.9\.1\)/);
    assert.ok(fs.statSync(path.join(dir, "bindings/go/samples/jfk.wav")).size > 300_000);
  });

  // A fake `npm` on PATH plays a compromised registry: what it "downloads" is not the pinned tarball.
  it("a tarball with the wrong checksum is refused and nothing is unpacked", () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "jota-tamper-"));
    try {
      fs.mkdirSync(path.join(tmp, "bin"));
      fs.writeFileSync(
        path.join(tmp, "bin/npm"),
        '#!/bin/sh\n# npm pack PKG -> writes a bogus tarball named like the real one\nname=$(echo "$3" | sed "s/@/-/"); echo bogus > "$name.tgz"\n',
        { mode: 0o755 },
      );
      const r = spawnSync("bash", [path.join(repoRoot, "scripts/fetch-sources.sh")], {
        env: { ...process.env, JOTA_THIRD_PARTY_DIR: path.join(tmp, "tp"), PATH: `${tmp}/bin:${process.env.PATH}` },
        encoding: "utf8",
      });
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /ERROR: .*node-llama-cpp-3\.22\.1\.tgz: sha1 [0-9a-f]{40}, expected e908932762f21939024263d58f1d6dc3e88b23e6/);
      assert.ok(!fs.existsSync(path.join(tmp, "tp/llama.cpp")), "unpacked a tarball that failed verification");
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("a corrupt cached tarball is fetched again and verified", () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "jota-cache-"));
    try {
      const cache = path.join(tmp, ".tarballs");
      fs.mkdirSync(cache);
      fs.copyFileSync(path.join(thirdParty, ".tarballs/node-llama-cpp-3.22.1.tgz"), path.join(cache, "node-llama-cpp-3.22.1.tgz"));
      fs.writeFileSync(path.join(cache, "nodejs-whisper-0.3.1.tgz"), "truncated");
      const r = spawnSync("bash", [path.join(repoRoot, "scripts/fetch-sources.sh")], {
        env: { ...process.env, JOTA_THIRD_PARTY_DIR: tmp },
        encoding: "utf8",
      });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(sha1(path.join(cache, "nodejs-whisper-0.3.1.tgz")), pinned("WHISPER"));
      assert.ok(fs.existsSync(path.join(tmp, "whisper.cpp/bindings/go/samples/jfk.wav")));
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
