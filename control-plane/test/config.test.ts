// Configuration is read and validated in one place, at start-up.
import assert from "node:assert/strict";
import path from "node:path";
import { ConfigError, loadConfig } from "../src/index";
import { repoRoot } from "../src/config/paths";

const token = () => "generated";

describe("config", () => {
  it("defaults to local engines on the generated test models", () => {
    const c = loadConfig({}, token);
    assert.equal(c.httpPort, 8080);
    assert.equal(c.host, "127.0.0.1");
    assert.equal(c.localInference?.model, path.join(repoRoot, "models/test/tiny-chat.gguf"));
    assert.equal(c.localInference?.port, 50051);
    assert.equal(c.localTranscription?.port, 50052);
    assert.equal(c.usesTestModels, true);
    assert.equal(c.engineToken, "generated");
    assert.equal(c.engineTokenGenerated, true);
    assert.ok(Object.isFrozen(c));
  });

  it("uses remote engines instead of local ones when URLs are given", () => {
    const c = loadConfig({ JOTA_INFERENCE_URLS: "a:50051, b:50051", JOTA_TRANSCRIPTION_URLS: "c:50052", JOTA_ENGINE_TOKEN: "t" }, token);
    assert.deepEqual(c.inferenceUrls, ["a:50051", "b:50051"]);
    assert.equal(c.localInference, undefined);
    assert.equal(c.localTranscription, undefined);
    assert.equal(c.usesTestModels, false);
    assert.equal(c.engineToken, "t");
  });

  it("real model paths turn the test-model warning off", () => {
    const c = loadConfig({ JOTA_MODEL: "/models/qwen.gguf", JOTA_EMBED_MODEL: "", JOTA_WHISPER_MODEL: "" }, token);
    assert.equal(c.usesTestModels, false);
    assert.equal(c.localTranscription, undefined);
  });

  for (const [env, variable, msg] of [
    [{ JOTA_HTTP_PORT: "eighty" }, "JOTA_HTTP_PORT", /'eighty' is not an integer/],
    [{ JOTA_HTTP_PORT: "70000" }, "JOTA_HTTP_PORT", /outside \[0, 65535\]/],
    [{ JOTA_SLOTS: "0" }, "JOTA_SLOTS", /outside/],
    [{ JOTA_INFERENCE_URLS: "http://x" }, "JOTA_INFERENCE_URLS", /not host:port/],
    [{ JOTA_LOG_LEVEL: "loud" }, "JOTA_LOG_LEVEL", /not one of/],
    [{ JOTA_MODEL: "", JOTA_EMBED_MODEL: "" }, "JOTA_MODEL", /no chat or embedding model/],
    [{ JOTA_DATA_DIR: "" }, "JOTA_DATA_DIR", /is empty/],
    [{ JOTA_SECRET: "short" }, "JOTA_SECRET", /shorter than 16/],
    [{ JOTA_SYNC_LIMIT_MS: "-1" }, "JOTA_SYNC_LIMIT_MS", /outside/],
    [{ JOTA_OIDC_ISSUER: "https://id.example/realms/jota" }, "JOTA_OIDC_JWKS_URL", /needs both/],
  ] as const) {
    it(`rejects ${JSON.stringify(env)} naming ${variable}`, () => {
      assert.throws(
        () => loadConfig(env, token),
        (e: Error) => e instanceof ConfigError && e.variable === variable && msg.test(e.message),
      );
    });
  }
});
