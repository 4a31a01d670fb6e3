// A client that goes away aborts its generation: the SDK's stream aborted
// after a few chunks (or a non-streamed request given up while it waits)
// makes the engine cancel the sequence and free its slot, and the request is
// stored ABORTED with the part of the reply generated so far.
import assert from "node:assert/strict";
import { APIUserAbortError } from "openai";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { openaiClient, waitUntil } from "./helpers/openai";

describe("openai /v1/chat/completions: client disconnect", function () {
  this.timeout(180_000);
  let t: TestGateway;
  let u: TestUser;
  // A long context and no stop in sight: an unaborted generation would run for many seconds.
  before(async () => {
    t = await startTestGateway({ slots: 2, ctxSize: 8192, env: { JOTA_RATE_BURST: "1000" } });
    u = await t.user("leaver");
  });
  after(async () => t?.close());

  const info = () => t.stack.pool.inference[0]!.client.info();
  const long = { model: "jota", messages: [{ role: "user" as const, content: "Escribe una novela muy larga" }], max_tokens: 8000, temperature: 0.8, seed: 3 };

  it("aborting the SDK stream after a few chunks cancels the engine's generation and stores the request ABORTED", async () => {
    const before = (await info()).counters!;
    const ac = new AbortController();
    const { data: stream, response } = await openaiClient(t, u.key)
      .chat.completions.create({ ...long, stream: true }, { signal: ac.signal })
      .withResponse();
    const requestId = response.headers.get("x-jota-request")!;
    let received = "";
    let chunks = 0;
    // The SDK ends the iteration quietly once its signal aborts: what came in before is all the client saw.
    for await (const c of stream) {
      received += c.choices[0]?.delta.content ?? "";
      if (++chunks === 5) ac.abort();
    }
    assert.ok(chunks < 50, `${chunks} chunks arrived after the abort`);
    const after = await waitUntil(info, (i) => i.slotsBusy === 0 && i.counters!.cancellations > before.cancellations);
    assert.equal(after.slotsBusy, 0, "the engine's slot is still busy");
    assert.equal(after.counters!.cancellations - before.cancellations, 1);
    const generated = after.counters!.generatedTokens - before.generatedTokens;
    assert.ok(generated < 4000, `the engine generated ${generated} tokens: it did not stop`);

    const req = await waitUntil(() => t.stack.db.repos.requests.get(u.userId, requestId), (r) => r.status === "ABORTED");
    assert.equal(req.status, "ABORTED");
    assert.equal(req.finishReason, "cancelled");
    const reply = (await t.stack.db.repos.messages.list(u.userId, req.conversationId!)).items.find((m) => m.role === "ASSISTANT");
    assert.ok(reply, "the partial reply is stored");
    assert.ok(reply.content.startsWith(received), "the stored partial reply does not start with what the client received");
  });

  it("a client that gives up on a non-streamed reply aborts it too", async () => {
    const before = (await info()).counters!;
    const ac = new AbortController();
    const pending = openaiClient(t, u.key).chat.completions.create(long, { signal: ac.signal });
    // Abort once the engine is decoding this request.
    await waitUntil(info, (i) => i.counters!.generatedTokens > before.generatedTokens + 20);
    ac.abort();
    await assert.rejects(pending, APIUserAbortError);
    const after = await waitUntil(info, (i) => i.slotsBusy === 0 && i.counters!.cancellations > before.cancellations);
    assert.equal(after.counters!.cancellations - before.cancellations, 1);
    assert.equal(after.slotsBusy, 0);
    const latest = await waitUntil(
      async () => (await t.stack.db.repos.requests.list(u.userId, { limit: 1 })).items[0]!,
      (r) => r.status === "ABORTED",
    );
    assert.equal(latest.status, "ABORTED");
    assert.equal(latest.finishReason, "cancelled");
  });
});
