// Bad input under /v1: each case gets its documented status with OpenAI's
// error shape (type, code, param naming the field), nothing is stored for
// it, and the gateway keeps serving. Covers malformed JSON, wrong types,
// huge bodies, unknown fields, invalid UTF-8, wrong / missing / revoked keys,
// missing scopes, unsupported OpenAI options, unknown paths and methods,
// and the per-credential rate limit.
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { AuthenticationError, BadRequestError, PermissionDeniedError } from "openai";
import { OpenAIErrorBody } from "../src/openai/errors";
import { api, startTestGateway, type TestGateway } from "./helpers/gateway";
import { openaiClient } from "./helpers/openai";

const BURST = 60;
const MAX_BODY = 64 * 1024;

interface Shape {
  status: number;
  json: { error: { message: string; type: string; param: string | null; code: string | null } };
  headers: Headers;
}

function openaiShape(r: { status: number; json: any; text: string }): asserts r is { status: number; json: Shape["json"]; text: string } {
  assert.ok(r.json?.error, `not an error body: ${r.text}`);
  assert.deepEqual(Object.keys(r.json).sort(), ["error"], r.text);
  assert.deepEqual(Object.keys(r.json.error).sort(), ["code", "message", "param", "type"], r.text);
  assert.equal(typeof r.json.error.message, "string");
  assert.ok(r.json.error.message.length > 0);
  OpenAIErrorBody.parse(r.json); // the error shape the OpenAPI document gives for /v1
}

describe("openai /v1: bad input", function () {
  this.timeout(120_000);
  let t: TestGateway;
  before(async () => {
    t = await startTestGateway({ env: { JOTA_RATE_BURST: String(BURST), JOTA_RATE_LIMIT: "1", JOTA_MAX_BODY_BYTES: String(MAX_BODY) } });
  });
  after(async () => t?.close());

  /** What a user has stored: must not change on refused requests. */
  async function footprint(userId: string) {
    const repos = t.stack.db.repos;
    const convs = (await repos.conversations.list(userId, { limit: 200 })).items;
    const reqs = (await repos.requests.list(userId, { limit: 200 })).items;
    return { conversations: convs.length, requests: reqs.length };
  }

  const chat = (body: unknown) => ({ model: "jota", messages: [{ role: "user", content: "hola" }], max_tokens: 2, ...(body as object) });

  it("refuses malformed chat requests with the field named, storing nothing", async () => {
    const u = await t.user("careless");
    const before = await footprint(u.userId);
    const cases: [unknown, number, string | null, string][] = [
      [chat({ temperature: "hot" }), 400, "temperature", "invalid_type"],
      [chat({ temperature: 3 }), 400, "temperature", "invalid_value"],
      [chat({ max_tokens: 0 }), 400, "max_tokens", "invalid_value"],
      [chat({ max_tokens: 1.5 }), 400, "max_tokens", "invalid_type"],
      [chat({ top_p: 0 }), 400, "top_p", "invalid_value"],
      [chat({ seed: -1 }), 400, "seed", "invalid_value"],
      [chat({ stop: ["a", "b", "c", "d", "e"] }), 400, "stop", "invalid_value"],
      [chat({ stop: "" }), 400, "stop", "invalid_value"],
      [chat({ stream: "yes" }), 400, "stream", "invalid_type"],
      [chat({ frobnicate: true }), 400, "frobnicate", "unknown_parameter"],
      [chat({ stream_options: { include_usage: true, extra: 1 } }), 400, "stream_options.extra", "unknown_parameter"],
      [chat({ messages: [{ role: "user", content: "x", mood: "happy" }] }), 400, "messages.0.mood", "unknown_parameter"],
      [chat({ messages: [] }), 400, "messages", "invalid_value"],
      [chat({ messages: [{ role: "robot", content: "x" }] }), 400, "messages.0.role", "invalid_value"],
      [chat({ messages: [{ role: "user", content: 42 }] }), 400, "messages.0.content", "invalid_value"],
      [chat({ messages: [{ role: "user" }] }), 400, "messages.0.content", "missing_required_parameter"],
      [chat({ messages: [{ role: "user", content: "hola" }, { role: "assistant", content: "¿sí?" }] }), 400, "messages.1.role", "invalid_value"],
      [chat({ messages: [{ role: "user", content: "   " }] }), 400, "messages.0.content", "invalid_value"],
      [chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "http://x" } }] }] }), 400, "messages.0.content.0.type", "unsupported_value"],
      [chat({ messages: [{ role: "tool", content: "42", tool_call_id: "c1" }, { role: "user", content: "x" }] }), 400, "messages.0.role", "unsupported_value"],
      [chat({ n: 2 }), 400, "n", "unsupported_value"],
      [chat({ logprobs: true }), 400, "logprobs", "unsupported_parameter"],
      [chat({ logit_bias: { "50256": -100 } }), 400, "logit_bias", "unsupported_parameter"],
      [chat({ tools: [{ type: "function", function: { name: "f" } }] }), 400, "tools", "unsupported_parameter"],
      [chat({ tool_choice: "required" }), 400, "tool_choice", "unsupported_value"],
      [chat({ response_format: { type: "yaml" } }), 400, "response_format.type", "invalid_value"],
      [chat({ response_format: { type: "json_schema", json_schema: { name: "bad name!", schema: {} } } }), 400, "response_format.json_schema.name", "invalid_value"],
      [{ messages: [{ role: "user", content: "x" }] }, 400, "model", "missing_required_parameter"],
      [[1, 2, 3], 400, null, "invalid_type"],
      [chat({ model: "gpt-4o" }), 404, "model", "model_not_found"],
    ];
    for (const [body, status, param, code] of cases) {
      const r = await api(t, u.key, "POST", "/v1/chat/completions", body);
      openaiShape(r);
      assert.equal(r.status, status, `${JSON.stringify(body)} -> ${r.text}`);
      assert.equal(r.json.error.type, "invalid_request_error", r.text);
      assert.equal(r.json.error.param, param, `${JSON.stringify(body)} -> ${r.text}`);
      assert.equal(r.json.error.code, code, `${JSON.stringify(body)} -> ${r.text}`);
    }
    // Known OpenAI fields that cannot change the reply are accepted (and ignored).
    const ok = await api(t, u.key, "POST", "/v1/chat/completions", chat({ user: "u-1", metadata: { a: "b" }, store: false, n: 1, stop: null, parallel_tool_calls: true, service_tier: "auto", stream_options: { include_usage: true } }));
    assert.equal(ok.status, 200, ok.text);
    const after = await footprint(u.userId);
    assert.deepEqual(after, { conversations: before.conversations + 1, requests: before.requests + 1 }, "only the accepted request is stored");
  });

  it("a stop string is limited in UTF-8 bytes, as the engine limits it: 258 bytes is a 400 on stop, storing nothing; 256 bytes is answered", async () => {
    const u = await t.user("long-stops");
    const before = await footprint(u.userId);
    // 129 characters, 258 bytes: within a limit counted in characters, beyond the engine's.
    for (const [stop, param] of [
      ["é".repeat(129), "stop"],
      [["fin", "é".repeat(129)], "stop.1"],
    ] as const) {
      const r = await api(t, u.key, "POST", "/v1/chat/completions", chat({ stop }));
      openaiShape(r);
      assert.equal(r.status, 400, r.text);
      assert.deepEqual([r.json.error.type, r.json.error.param, r.json.error.code], ["invalid_request_error", param, "invalid_value"], r.text);
    }
    assert.deepEqual(await footprint(u.userId), before);

    for (const stop of ["é".repeat(128), ["fin", "é".repeat(128)]]) {
      const ok = await api(t, u.key, "POST", "/v1/chat/completions", chat({ stop }));
      assert.equal(ok.status, 200, ok.text);
    }
  });

  it("a JSON schema the engine cannot compile is a 400 on response_format; the user's message is kept on the FAILED request", async () => {
    const u = await t.user("schemer");
    const r = await api(
      t,
      u.key,
      "POST",
      "/v1/chat/completions",
      chat({ response_format: { type: "json_schema", json_schema: { name: "broken", schema: { type: "object", properties: { a: { $ref: "#/definitions/missing" } } } } } }),
    );
    openaiShape(r);
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.param, "response_format");
    assert.match(r.json.error.message, /json_schema/);
    const req = await t.stack.db.repos.requests.get(u.userId, r.headers.get("x-jota-request")!);
    assert.equal(req.status, "FAILED");
    const said = (await t.stack.db.repos.messages.list(u.userId, req.conversationId!)).items;
    assert.deepEqual(said.map((m) => [m.role, m.content]), [["USER", "hola"]]);
  });

  it("a prompt longer than the engine's context is a 400 context_length_exceeded, streamed or not", async () => {
    const u = await t.user("verbose");
    const long = "una palabra más ".repeat(2000);
    for (const stream of [false, true]) {
      const r = await api(t, u.key, "POST", "/v1/chat/completions", chat({ stream, messages: [{ role: "user", content: long }] }));
      openaiShape(r);
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.code, "context_length_exceeded");
      assert.equal(r.json.error.param, "messages");
    }
  });

  it("refuses bodies that are not JSON, not UTF-8, too large, or of another media type", async () => {
    const u = await t.user("sloppy");
    const before = await footprint(u.userId);
    const post = async (body: string | Buffer, contentType: string) => {
      const res = await fetch(`${t.url}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${u.key}`, "content-type": contentType }, body });
      const text = await res.text();
      return { status: res.status, text, json: JSON.parse(text) };
    };
    const malformed = await post('{"model": "jota", "messages": [', "application/json");
    openaiShape(malformed);
    assert.equal(malformed.status, 400);
    assert.equal(malformed.json.error.code, "invalid_json");

    const latin1 = Buffer.concat([Buffer.from('{"model":"jota","messages":[{"role":"user","content":"caf'), Buffer.from([0xe9]), Buffer.from('"}]}')]);
    const notUtf8 = await post(latin1, "application/json");
    openaiShape(notUtf8);
    assert.equal(notUtf8.status, 400);
    assert.match(notUtf8.json.error.message, /UTF-8/);

    const huge = await post(JSON.stringify(chat({ messages: [{ role: "user", content: "x".repeat(MAX_BODY * 2) }] })), "application/json");
    openaiShape(huge);
    assert.equal(huge.status, 413);
    assert.equal(huge.json.error.code, "payload_too_large");

    const text = await post("hola", "text/plain");
    openaiShape(text);
    assert.equal(text.status, 415);
    assert.deepEqual(await footprint(u.userId), before);
  });

  it("a body that is not what its Content-Encoding says is a 400 invalid_encoding in OpenAI's shape; a gzip body is read", async () => {
    const u = await t.user("squeezer");
    const before = await footprint(u.userId);
    const post = async (encoding: string, body: Buffer) => {
      const res = await fetch(`${t.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${u.key}`, "content-type": "application/json", "content-encoding": encoding },
        body,
      });
      const text = await res.text();
      return { status: res.status, text, json: JSON.parse(text) };
    };
    const json = Buffer.from(JSON.stringify(chat({})));
    for (const [encoding, body] of [
      ["gzip", Buffer.from("this is not gzip at all")],
      ["gzip", gzipSync(json).subarray(0, 12)],
      ["br", Buffer.from("nor brotli, this")],
    ] as const) {
      const r = await post(encoding, body);
      openaiShape(r);
      assert.equal(r.status, 400, r.text);
      assert.deepEqual([r.json.error.type, r.json.error.code, r.json.error.param], ["invalid_request_error", "invalid_encoding", null], r.text);
    }
    const unknown = await post("compress", json);
    openaiShape(unknown);
    assert.equal(unknown.status, 415, unknown.text);
    assert.deepEqual(await footprint(u.userId), before);

    const ok = await post("gzip", gzipSync(json));
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.object, "chat.completion");
  });

  it("wrong, missing and revoked keys are 401s, a missing scope a 403, all in OpenAI's shape", async () => {
    const u = await t.user("keyholder");
    const body = chat({});
    const cases: [string | undefined, string][] = [
      [undefined, "missing"],
      ["jota_k_" + "0".repeat(40), "unknown key"],
      ["sk-proj-abcdef", "not a Jota key"],
    ];
    for (const [key, what] of cases) {
      const r = await api(t, key, "POST", "/v1/chat/completions", body);
      openaiShape(r);
      assert.equal(r.status, 401, what);
      assert.equal(r.json.error.type, "authentication_error");
      assert.equal(r.json.error.code, "invalid_api_key");
    }
    await t.stack.db.repos.apiKeys.revoke(u.userId, u.keyId);
    await assert.rejects(openaiClient(t, u.key).chat.completions.create({ model: "jota", messages: [{ role: "user", content: "x" }] }), AuthenticationError);
    await assert.rejects(openaiClient(t, u.key).models.list(), AuthenticationError);

    const audioOnly = await t.user("audio-only", ["audio"]);
    await assert.rejects(openaiClient(t, audioOnly.key).chat.completions.create({ model: "jota", messages: [{ role: "user", content: "x" }] }), (e: unknown) => {
      assert.ok(e instanceof PermissionDeniedError);
      assert.equal(e.type, "permission_error");
      return true;
    });
    assert.equal((await footprint(audioOnly.userId)).requests, 0);
  });

  it("an unknown conversation or path is a 404, a wrong method a 405, in OpenAI's shape", async () => {
    const u = await t.user("lost");
    const other = await t.user("owner");
    const theirs = await t.stack.db.repos.conversations.create(other.userId, { title: "private" });
    for (const conv of ["not-a-uuid", "00000000-0000-7000-8000-000000000000", theirs.id])
      for (const stream of [false, true]) {
        const r = await api(t, u.key, "POST", "/v1/chat/completions", chat({ stream }), { "X-Jota-Conversation": conv });
        openaiShape(r);
        assert.equal(r.status, 404, `${conv}: ${r.text}`);
        assert.deepEqual([r.json.error.type, r.json.error.code, r.json.error.param], ["invalid_request_error", "conversation_not_found", "X-Jota-Conversation"], `${conv}, stream ${stream}: ${r.text}`);
      }
    assert.equal((await t.stack.db.repos.messages.list(other.userId, theirs.id)).items.length, 0, "nothing was added to another user's conversation");
    const unknown = await api(t, u.key, "GET", "/v1/assistants");
    openaiShape(unknown);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, "unknown_url");
    const wrong = await api(t, u.key, "GET", "/v1/chat/completions");
    openaiShape(wrong);
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get("allow"), "POST");
    await assert.rejects(openaiClient(t, u.key).chat.completions.create({ model: "jota", messages: [{ role: "user", content: "x" }], n: 3 }), BadRequestError);
    assert.deepEqual(await footprint(u.userId), { conversations: 0, requests: 0 });
  });

  it("the per-credential rate limit is a 429 rate_limit_exceeded with Retry-After, counted for 'openai'", async () => {
    const u = await t.user("hasty");
    const counted = async () => {
      const text = await (await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${t.admin.key}` } })).text();
      return Number(/^jota_rate_limited_total\{interface="openai"\} (\d+)/m.exec(text)?.[1] ?? 0);
    };
    const before = await counted();
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<typeof api>> | undefined;
    for (let i = 0; i < BURST + 2; i++) {
      const r = await api(t, u.key, "GET", "/v1/models");
      statuses.push(r.status);
      if (r.status === 429) limited ??= r;
    }
    assert.ok(statuses.slice(0, BURST - 1).every((s) => s === 200), statuses.join());
    assert.ok(limited, `no 429 in ${statuses.join()}`);
    openaiShape(limited);
    assert.equal(limited.json.error.type, "rate_limit_error");
    assert.equal(limited.json.error.code, "rate_limit_exceeded");
    assert.ok(Number(limited.headers.get("retry-after")) >= 1);
    assert.ok((await counted()) > before);
    // Another credential is not affected, and the gateway serves on.
    const calm = await t.user("calm");
    const r = await api(t, calm.key, "GET", "/v1/models");
    assert.equal(r.status, 200);
  });
});
