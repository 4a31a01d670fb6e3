// The supervisor that runs engines as children: ready only when SERVING,
// restarts after a crash, stops without orphans, reports bad start-ups.
import assert from "node:assert/strict";
import { once } from "node:events";
import { EngineProcess, EngineStartError, checkHealth, silentLogger } from "../src/index";
import { buildBin, processGone, requireFile, startEngine } from "./helpers/engines";

describe("engine process supervisor", function () {
  this.timeout(120_000);

  it("resolves start() only once health says SERVING", async () => {
    const e = await startEngine({ kind: "inference" });
    try {
      assert.equal(e.state, "ready");
      assert.equal(await checkHealth(e.address!, "jota.v1.Inference"), "SERVING");
    } finally {
      await e.stop();
    }
  });

  it("restarts an engine killed with SIGKILL, on a new process", async () => {
    const e = await startEngine({ kind: "inference", restart: true });
    try {
      const firstPid = e.pid!;
      const ready = once(e, "ready");
      process.kill(firstPid, "SIGKILL");
      const [exit] = await once(e, "exit");
      assert.equal(exit.signal, "SIGKILL");
      assert.equal(exit.expected, false);
      await ready;
      assert.notEqual(e.pid, firstPid);
      assert.equal(e.restartCount, 1);
      assert.equal(await checkHealth(e.address!, "jota.v1.Inference"), "SERVING");
    } finally {
      await e.stop();
    }
  });

  it("stop() ends the process (SIGTERM) and leaves no orphan", async () => {
    const e = await startEngine({ kind: "transcription" });
    const pid = e.pid!;
    await e.stop();
    assert.equal(e.state, "stopped");
    assert.ok(processGone(pid), `engine pid ${pid} still exists`);
  });

  it("reports a start-up failure with the engine's own error, and does not loop", async () => {
    const e = new EngineProcess({
      name: "inference",
      binary: requireFile(buildBin("jota-inference")),
      args: ["--listen", "127.0.0.1:0", "--model", "/nonexistent/model.gguf"],
      healthService: "jota.v1.Inference",
      logger: silentLogger,
    });
    await assert.rejects(e.start(), (err: Error) => {
      assert.ok(err instanceof EngineStartError);
      assert.match(err.message, /model file not found: \/nonexistent\/model\.gguf/);
      return true;
    });
    assert.equal(e.state, "failed");
  });

  it("reports a binary that cannot run", async () => {
    const e = new EngineProcess({
      name: "x",
      binary: "/nonexistent/jota-inference",
      args: [],
      healthService: "jota.v1.Inference",
      logger: silentLogger,
    });
    await assert.rejects(e.start(), /cannot run \/nonexistent\/jota-inference/);
  });
});
