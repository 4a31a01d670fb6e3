// POST /v1/embeddings through the official openai SDK: the vectors are the
// engine's own (Embed, normalised), in input order, as floats or as base64
// (the SDK's default, which it decodes); inputs Jota cannot embed are 400s
// naming the field.
import assert from "node:assert/strict";
import OpenAI, { BadRequestError, NotFoundError } from "openai";
import { EmbeddingList } from "../src/openai/embeddings";
import { api, startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { engineModels, openaiClient } from "./helpers/openai";

describe("openai /v1/embeddings", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let u: TestUser;
  let client: OpenAI;
  before(async () => {
    t = await startTestGateway({ env: { JOTA_RATE_BURST: "1000" } });
    u = await t.user("embedder");
    client = openaiClient(t, u.key);
  });
  after(async () => t?.close());

  const inputs = ["La casa es azul", "hello world", "¿Dónde está la biblioteca?"];

  function close(a: number[], b: number[]) {
    assert.equal(a.length, b.length);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-6, `component ${i}: ${a[i]} vs ${b[i]}`);
  }

  it("returns the engine's normalised vectors, in order, as floats and as base64", async () => {
    const direct = await t.stack.pool.inference[0]!.client.embed({ inputs, normalize: true, requestId: "" });
    const floats = await client.embeddings.create({ model: "jota", input: inputs, encoding_format: "float" });
    // The SDK asks for base64 when no encoding is given and decodes it: the same numbers must come out.
    const decoded = await client.embeddings.create({ model: "jota", input: inputs });
    const raw = await api(t, u.key, "POST", "/v1/embeddings", { model: "jota", input: inputs, encoding_format: "base64" });
    assert.equal(raw.status, 200);
    assert.equal(typeof raw.json.data[0].embedding, "string");
    EmbeddingList.parse(raw.json); // as the OpenAPI document describes it
    EmbeddingList.parse((await api(t, u.key, "POST", "/v1/embeddings", { model: "jota", input: inputs[0], encoding_format: "float" })).json);

    assert.equal(floats.object, "list");
    assert.equal(floats.model, (await engineModels(t.stack)).embedding);
    assert.deepEqual(floats.data.map((d) => d.index), [0, 1, 2]);
    floats.data.forEach((d, i) => {
      close(d.embedding, direct.embeddings[i]!.values);
      close(decoded.data[i]!.embedding, d.embedding);
      const norm = Math.sqrt(d.embedding.reduce((s, v) => s + v * v, 0));
      assert.ok(Math.abs(norm - 1) < 1e-4, `norm ${norm}`);
    });
    assert.notDeepEqual(floats.data[0]!.embedding, floats.data[1]!.embedding);
    assert.equal(floats.usage.prompt_tokens, direct.totalTokens);
    assert.equal(floats.usage.total_tokens, direct.totalTokens);
  });

  it("a single string input is one vector; the embedding model's own id works as the model", async () => {
    const { embedding } = await engineModels(t.stack);
    const one = await client.embeddings.create({ model: embedding, input: inputs[1]!, encoding_format: "float" });
    assert.equal(one.data.length, 1);
    const direct = await t.stack.pool.inference[0]!.client.embed({ inputs: [inputs[1]!], normalize: true, requestId: "" });
    close(one.data[0]!.embedding, direct.embeddings[0]!.values);
  });

  it("refuses what it cannot embed, naming the field", async () => {
    const cases: [unknown, string, string][] = [
      [{ model: "jota", input: [1, 2, 3] }, "input", "unsupported_value"],
      [{ model: "jota", input: [[1, 2]] }, "input", "unsupported_value"],
      [{ model: "jota", input: "" }, "input", "invalid_value"],
      [{ model: "jota", input: ["ok", ""] }, "input.1", "invalid_value"],
      [{ model: "jota", input: [] }, "input", "invalid_value"],
      [{ model: "jota", input: ["ok", { text: "x" }] }, "input.1", "invalid_type"],
      [{ model: "jota", input: "x", dimensions: 8 }, "dimensions", "unsupported_parameter"],
      [{ model: "jota", input: "x", encoding_format: "int8" }, "encoding_format", "invalid_value"],
      [{ model: "jota", input: "x", truncate: true }, "truncate", "unknown_parameter"],
      [{ input: "x" }, "model", "missing_required_parameter"],
    ];
    for (const [body, param, code] of cases) {
      const r = await api(t, u.key, "POST", "/v1/embeddings", body);
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.equal(r.json.error.type, "invalid_request_error");
      assert.equal(r.json.error.param, param, JSON.stringify(body));
      assert.equal(r.json.error.code, code, JSON.stringify(body));
    }
    // An input longer than the embedding model takes: the engine's refusal, on that input.
    const long = "palabra ".repeat(5000);
    await assert.rejects(client.embeddings.create({ model: "jota", input: ["corto", long] }), (e: unknown) => {
      assert.ok(e instanceof BadRequestError);
      assert.equal((e.error as { param: string }).param, "input.1");
      assert.match(e.message, /tokens/);
      return true;
    });
    await assert.rejects(client.embeddings.create({ model: "text-embedding-3-small", input: "x" }), NotFoundError);
  });

  it("a key without the embeddings scope is refused", async () => {
    const chatOnly = await t.user("chat-only", ["chat"]);
    const r = await api(t, chatOnly.key, "POST", "/v1/embeddings", { model: "jota", input: "x" });
    assert.equal(r.status, 403);
    assert.deepEqual(Object.keys(r.json.error).sort(), ["code", "message", "param", "type"]);
    assert.equal(r.json.error.type, "permission_error");
  });
});
