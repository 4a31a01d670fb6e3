// GET /v1/models through the official openai SDK: the alias "jota" and the
// models the engines report (chat, embedding, transcription); each can be
// retrieved; a model no engine serves is a 404 model_not_found wherever it
// is named.
import assert from "node:assert/strict";
import OpenAI, { NotFoundError } from "openai";
import { ModelList, ModelObject } from "../src/openai/models";
import { api, startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { engineModels, openaiClient } from "./helpers/openai";

describe("openai /v1/models", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let u: TestUser;
  let client: OpenAI;
  before(async () => {
    t = await startTestGateway({ transcription: true, env: { JOTA_RATE_BURST: "1000" } });
    u = await t.user("lister");
    client = openaiClient(t, u.key);
  });
  after(async () => t?.close());

  it("lists 'jota' and every model the engines serve", async () => {
    const served = await engineModels(t.stack);
    const ids: string[] = [];
    for await (const m of client.models.list()) {
      assert.equal(m.object, "model");
      assert.equal(m.owned_by, "jota");
      assert.ok(Number.isInteger(m.created) && m.created > 1_600_000_000);
      ids.push(m.id);
    }
    assert.equal(ids[0], "jota");
    assert.deepEqual([...ids].sort(), [...new Set(["jota", served.chat, served.embedding, served.transcription!])].sort());
    // The raw answers are what the OpenAPI document says.
    const raw = await api(t, u.key, "GET", "/v1/models");
    assert.deepEqual(ModelList.parse(raw.json).data.map((m) => m.id), ids);
    assert.equal(ModelObject.parse((await api(t, u.key, "GET", `/v1/models/${served.chat}`)).json).id, served.chat);
  });

  it("retrieves a listed model and 404s an unknown one", async () => {
    const served = await engineModels(t.stack);
    assert.equal((await client.models.retrieve(served.chat)).id, served.chat);
    assert.equal((await client.models.retrieve("jota")).id, "jota");
    await assert.rejects(client.models.retrieve("gpt-4o"), (e: unknown) => {
      assert.ok(e instanceof NotFoundError);
      assert.equal(e.code, "model_not_found");
      assert.equal(e.type, "invalid_request_error");
      return true;
    });
  });

  it("chat accepts the chat model's own id and refuses a model of another kind or none", async () => {
    const served = await engineModels(t.stack);
    const ok = await client.chat.completions.create({ model: served.chat, messages: [{ role: "user", content: "hola" }], max_tokens: 2 });
    assert.equal(ok.model, served.chat);
    for (const model of [served.transcription!, "gpt-4o"]) {
      const r = await api(t, u.key, "POST", "/v1/chat/completions", { model, messages: [{ role: "user", content: "hola" }] });
      assert.equal(r.status, 404, model);
      assert.deepEqual(r.json.error, { message: r.json.error.message, type: "invalid_request_error", param: "model", code: "model_not_found" });
      assert.match(r.json.error.message, new RegExp(model));
    }
  });
});
