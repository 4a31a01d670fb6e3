// Deleting a document erases its text from the sources of the turns that
// cited it, as forgetting a memory does (memories-api.test.ts): the turn keeps
// the citation (id, source, score) with `text` emptied and `erased: true`;
// the other documents' citations are untouched; a turn that retrieved the
// document before the delete and is written after it loses the text too
// (the delete's note, turn.ts eraseForgotten). Real parts: the gateway's
// PGlite with pgvector, its engine's embedding model, its private Redis and
// in-process ingest worker; every turn retrieves (JOTA_RETRIEVAL=always).
import assert from "node:assert/strict";
import type { Retriever } from "@jota/control-plane/memory/retrieve";
import { api, startTestGateway, type TestGateway, type TestUser, until } from "./helpers/gateway";

interface Source {
  id: string;
  source: string;
  text: string;
  erased: boolean;
}

describe("documents: delete erases the document's text from past turns' sources", function () {
  this.timeout(180_000);
  let t: TestGateway;
  let u: TestUser;
  before(async () => {
    t = await startTestGateway({ env: { JOTA_RETRIEVAL: "always", JOTA_MEMORY_EXTRACTION: "off" } });
    u = await t.user("doc-cite");
  });
  after(() => t?.close());

  const upload = async (source: string, text: string) => {
    const up = await api(t, u.key, "POST", "/api/v1/documents", { source, text });
    assert.equal(up.status, 202, up.text);
    await until(`${source} READY`, 60_000, () => api(t, u.key, "GET", `/api/v1/documents/${up.json.document.id}`), (r) => r.json?.status === "ready");
    return up.json.document.id as string;
  };

  it("the deleted document's citation keeps its id without its text; the other document's stays whole", async () => {
    const keys = await upload("llaves.md", "# Llaves\n\nLas llaves de repuesto están en la maceta del balcón.");
    await upload("seguro.md", "# Seguro\n\nEl seguro del coche vence el 14 de marzo.");

    const chat = await api(t, u.key, "POST", "/api/v1/chat", { content: "¿Dónde están las llaves de repuesto?", options: { max_tokens: 4 } });
    assert.equal(chat.status, 200, chat.text);
    const sources = chat.json.sources as Source[];
    const cited = sources.find((s) => s.source === "llaves.md");
    assert.ok(cited, `the document is a source: ${JSON.stringify(sources)}`);
    assert.match(cited.text, /maceta del balcón/);
    assert.ok(sources.some((s) => s.source === "seguro.md"), "both documents are cited (the user has two chunks)");

    assert.equal((await api(t, u.key, "DELETE", `/api/v1/documents/${keys}`)).status, 204);
    const req = await api(t, u.key, "GET", `/api/v1/requests/${chat.json.request_id}`);
    assert.equal(req.status, 200, req.text);
    const after = (req.json.sources as Source[]).find((s) => s.source === "llaves.md")!;
    assert.deepEqual([after.id, after.text, after.erased], [cited.id, "", true]);
    const other = (req.json.sources as Source[]).find((s) => s.source === "seguro.md")!;
    assert.deepEqual([other.erased, /14 de marzo/.test(other.text)], [false, true], "the other document's citation is untouched");

    // A turn after the delete no longer finds it.
    const next = await api(t, u.key, "POST", "/api/v1/chat", { content: "¿Dónde están las llaves de repuesto?", options: { max_tokens: 4 } });
    assert.equal(next.status, 200, next.text);
    assert.ok(!(next.json.sources as Source[]).some((s) => s.source === "llaves.md"), "a deleted document is not retrieved");
  });

  it("a document deleted after a running turn retrieved it, before the turn is written, is erased from that turn's sources too", async () => {
    const id = await upload("caja.md", "# Caja\n\nLa caja fuerte se abre con el código 4821.");
    // The delete goes exactly between the turn's retrieval and its last write (the race): the runner's
    // real retriever is wrapped to send the DELETE, and wait for its 204, once it has found the document.
    const retrieval = (t.stack.runner as unknown as { deps: { retrieval: { retriever: Retriever } } }).deps.retrieval;
    const real = retrieval.retriever;
    let deleted: number | undefined;
    retrieval.retriever = {
      async retrieve(userId, query, opts) {
        const found = await real.retrieve(userId, query, opts);
        if (deleted === undefined && found.some((x) => x.source === "caja.md")) deleted = (await api(t, u.key, "DELETE", `/api/v1/documents/${id}`)).status;
        return found;
      },
    };
    let chat;
    try {
      chat = await api(t, u.key, "POST", "/api/v1/chat", { content: "¿Cómo se abre la caja fuerte?", options: { max_tokens: 4 } });
    } finally {
      retrieval.retriever = real;
    }
    assert.equal(chat.status, 200, chat.text);
    assert.equal(deleted, 204, "the document was retrieved, then deleted while the turn ran");
    assert.ok((chat.json.sources as Source[]).some((s) => s.source === "caja.md"), "the turn cited it");
    const req = await api(t, u.key, "GET", `/api/v1/requests/${chat.json.request_id}`);
    const stored = (req.json.sources as Source[]).find((s) => s.source === "caja.md")!;
    assert.deepEqual([stored.text, stored.erased], ["", true], "its stored citation has no text");
  });
});
