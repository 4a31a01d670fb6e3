// POST /api/v1/chat when no engine can serve: 503 engine_unavailable with
// Retry-After and the request id; the user's message and the FAILED request
// (with its cause) are stored, so nothing the user said is lost.
import assert from "node:assert/strict";
import { requestRoutes } from "../src/api/requests";
import { ErrorBody } from "../src/api/schemas";
import { api, startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";

describe("REST POST /api/v1/chat with no engine serving", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let alice: TestUser;

  before(async () => {
    t = await startTestGateway({ slots: 1, ctxSize: 512, embeddings: false });
    alice = await t.user("alice");
  });
  after(async () => {
    await t?.close();
  });

  it("answers 503 with Retry-After and the request id; the request is FAILED ENGINE_UNAVAILABLE and the message kept", async () => {
    // Served while the engine is up.
    assert.equal((await api(t, alice.key, "POST", "/api/v1/chat", { content: "hi", options: { max_tokens: 2 } })).status, 200);

    await t.inference.stop();
    const end = Date.now() + 15_000;
    while (t.stack.pool.status().some((s) => s.kind === "inference" && s.health === "serving")) {
      assert.ok(Date.now() < end, "the pool did not notice the engine stopped");
      await new Promise((r) => setTimeout(r, 50));
    }

    const r = await api(t, alice.key, "POST", "/api/v1/chat", { content: "is anyone there?" });
    assert.equal(r.status, 503, r.text);
    const e = ErrorBody.parse(r.json).error;
    assert.equal(e.code, "engine_unavailable");
    assert.ok(Number(r.headers.get("retry-after")) > 0);
    assert.equal(e.details.error_type, "ENGINE_UNAVAILABLE");
    const requestId = e.details.request_id as string;
    const conversationId = e.details.conversation_id as string;

    const req = requestRoutes.get.responses[200].schema.parse((await api(t, alice.key, "GET", `/api/v1/requests/${requestId}`)).json);
    assert.equal(req.status, "FAILED");
    assert.equal(req.error?.type, "ENGINE_UNAVAILABLE");
    assert.equal(req.reply, null);
    const msgs = (await api(t, alice.key, "GET", `/api/v1/conversations/${conversationId}/messages`)).json.items;
    assert.deepEqual(msgs.map((m: { role: string; content: string }) => [m.role, m.content]), [["user", "is anyone there?"]]);

    // The rest of the API, which needs no engine, still serves.
    assert.equal((await api(t, alice.key, "GET", "/api/v1/conversations")).status, 200);
  });
});
