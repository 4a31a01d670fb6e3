// Retrieved sources on every face: a document ingested for the user (into the
// gateway's own pgvector store, by the gateway's engine), then a message the
// router sends to needs_context, over WS, REST and /v1. Each reply carries
// the same sources, and the stored request has them too.
import assert from "node:assert/strict";
import { ingestDocument } from "@jota/control-plane";
import { api, startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { openaiClient } from "./helpers/openai";
import { connect } from "./helpers/ws-client";

const NOTE = "El seguro del coche vence el 14 de marzo; la póliza está a nombre de Ana y cubre a todo riesgo con franquicia.";
const QUESTION = "Según mis notas, ¿cuándo vence el seguro del coche?";

describe("retrieval: sources in WS, REST and /v1 replies", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let u: TestUser;
  before(async () => {
    t = await startTestGateway();
    u = await t.user("sources");
    assert.ok(t.stack.store, "the gateway opened its vector store");
    await ingestDocument({ userId: u.userId, source: "coche.md", title: "Coche", text: NOTE }, { engine: t.stack.pool.inference[0]!.client, store: t.stack.store, chunkTokens: 64, overlapTokens: 0 });
  });
  after(() => t?.close());

  const isNote = (s: { source: string; title: string | null; text: string; score: number }) => s.source === "coche.md" && s.title === "Coche" && s.text.trim() === NOTE && s.score > 0;

  it("WS: the end frame lists the note; the stored request has the same sources", async () => {
    const c = await connect(t, u.userId, u.key);
    c.send({ type: "message", id: "q", content: QUESTION, options: { max_tokens: 8 } });
    const end = await c.waitFor((f) => f.id === "q" && (f.type === "end" || f.type === "error"), "the end");
    assert.equal(end.type, "end", JSON.stringify(end));
    assert.equal(end.sources.length, 1, JSON.stringify(end.sources));
    assert.ok(isNote(end.sources[0]), JSON.stringify(end.sources[0]));
    const r = await api(t, u.key, "GET", `/api/v1/requests/${end.request_id}`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.sources, end.sources);
    assert.equal(r.json.route.route, "needs_context");
    c.close();
  });

  it("REST: the reply's request view lists the note; a plain chat turn lists nothing", async () => {
    const r = await api(t, u.key, "POST", "/api/v1/chat", { content: QUESTION, options: { max_tokens: 8 } });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.sources.length === 1 && isNote(r.json.sources[0]), JSON.stringify(r.json.sources));
    const plain = await api(t, u.key, "POST", "/api/v1/chat", { content: "Hola, ¿qué tal?", options: { max_tokens: 8 } });
    assert.equal(plain.status, 200, plain.text);
    assert.deepEqual(plain.json.sources, []);
  });

  it("/v1: the completion carries them in its 'jota' extension, streamed or not", async () => {
    const client = openaiClient(t, u.key);
    const res = await client.chat.completions.create({ model: "jota", messages: [{ role: "user", content: QUESTION }], max_tokens: 8 });
    const ext = (res as unknown as { jota?: { sources: Parameters<typeof isNote>[0][] } }).jota;
    assert.ok(ext && ext.sources.length === 1 && isNote(ext.sources[0]!), JSON.stringify(ext));
    const stream = await client.chat.completions.create({ model: "jota", messages: [{ role: "user", content: QUESTION }], max_tokens: 8, stream: true });
    const exts = [];
    for await (const chunk of stream) {
      const j = (chunk as unknown as { jota?: { sources: Parameters<typeof isNote>[0][] } }).jota;
      if (j) exts.push({ j, finish: chunk.choices[0]?.finish_reason });
    }
    assert.equal(exts.length, 1, "on the finish_reason chunk only");
    assert.ok(exts[0]!.finish && isNote(exts[0]!.j.sources[0]!));
  });
});
