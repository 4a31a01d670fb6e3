// A run of the stack that stops mid-turn (killed, crashed, power cut) leaves
// its turns' requests in flight, and nothing would ever finish them: a REST
// caller that got 202 PROCESSING would poll forever. On the embedded
// database only one process runs at a time (its lock), so the next start
// ends them FAILED with the cause; finished requests and every stored
// message are untouched.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { INTERRUPTED, loadConfig, silentLogger } from "@jota/control-plane";
import { openStack } from "../src/stack";

describe("stack: turns a stopped run left in flight (embedded database)", function () {
  this.timeout(120_000);

  it("are FAILED at the next start with the cause; finished requests and the messages stay as they were", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "jota-interrupted-"));
    const config = loadConfig({
      JOTA_DATA_DIR: dataDir,
      JOTA_HTTP_PORT: "0",
      JOTA_GRPC_PORT: "0",
      // No engine is needed: nothing here runs a turn.
      JOTA_INFERENCE_URLS: "127.0.0.1:1",
      JOTA_TRANSCRIPTION_URLS: "",
      JOTA_WHISPER_MODEL: "",
      JOTA_SECRET: "test-secret-0123456789abcdef",
      JOTA_MEMORY_EXTRACTION: "off",
    });
    try {
      let stack = await openStack(config, silentLogger);
      const repos = stack.db.repos;
      const u = await repos.users.create({ username: "interrupted" });
      const c = await repos.conversations.create(u.id);
      const pending = (await repos.requests.beginTurn(u.id, c.id, { content: "uno" })).request;
      const streaming = (await repos.requests.beginTurn(u.id, c.id, { content: "dos", status: "STREAMING", engine: "127.0.0.1:1", startedAt: new Date() })).request;
      const processing = (await repos.requests.beginTurn(u.id, c.id, { content: "tres", status: "STREAMING" })).request;
      await repos.requests.transition(u.id, processing.id, "PROCESSING");
      const completed = (await repos.requests.beginTurn(u.id, c.id, { content: "cuatro", status: "STREAMING" })).request;
      await repos.requests.endTurn(u.id, completed.id, { status: "COMPLETED", reply: { content: "respuesta" }, finishReason: "stop" });
      const before = (await repos.messages.list(u.id, c.id)).items.map((m) => [m.id, m.role, m.content]);
      await stack.close();

      stack = await openStack(config, silentLogger);
      try {
        for (const r of [pending, streaming, processing]) {
          const now = await stack.db.repos.requests.get(u.id, r.id);
          assert.deepEqual([now.status, now.errorType, now.error], ["FAILED", "INTERNAL", INTERRUPTED], `request ${r.status}`);
          assert.ok(now.finishedAt, "it has an end");
        }
        assert.equal((await stack.db.repos.requests.get(u.id, completed.id)).status, "COMPLETED");
        assert.deepEqual((await stack.db.repos.messages.list(u.id, c.id)).items.map((m) => [m.id, m.role, m.content]), before);
        assert.equal(before.length, 5);
      } finally {
        await stack.close();
      }
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
