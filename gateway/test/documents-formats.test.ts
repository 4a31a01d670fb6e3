// Documents in other formats than Markdown, end to end with real parts (the
// gateway's own Redis and ingest worker, the engine's embedding model,
// pgvector on PGlite): HTML and PDF uploads, as JSON and as multipart forms,
// become chunks holding their text; what is not what it claims is refused at
// upload; a PDF that cannot be read fails its job, and its document is FAILED
// with the reason.
import assert from "node:assert/strict";
import { collectionName } from "@jota/control-plane";
import { makePdf } from "../../control-plane/test/helpers/pdf";
import { api, startTestGateway, type TestGateway, type TestUser, until } from "./helpers/gateway";

const MAX_BODY = 64 * 1024;

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Manual de la caldera</title>
<style>.oculto { display: none }</style><script>window.rastreo = "script-que-no-debe-estar";</script></head>
<body>
<nav><a href="/">Portada</a> <a href="/tienda">Menú-de-navegación</a></nav>
<h1>Purgar los radiadores</h1>
<p>Con la calefacción apagada, abra la válvula del radiador hasta que salga agua.</p>
<h2>Presión</h2>
<ul><li>La presión correcta es de 1,5 bar.</li><li>Por debajo de 1 bar, rellene el circuito.</li></ul>
</body></html>`;

describe("documents: HTML and PDF uploads", function () {
  this.timeout(300_000);
  let t: TestGateway;
  let u: TestUser;
  let collection: string;
  before(async () => {
    t = await startTestGateway({ env: { JOTA_MAX_BODY_BYTES: String(MAX_BODY) } });
    u = await t.user("formats");
    const e = t.stack.pool.inference[0]!.client;
    const info = (await e.info()).embeddingModel!;
    collection = collectionName((await e.embed({ inputs: ["x"], normalize: true, requestId: "" })).model || info.name, info.embeddingSize);
  });
  after(() => t?.close());

  /** POST /documents as multipart/form-data. */
  async function postForm(form: FormData): Promise<{ status: number; json: any; text: string }> {
    const res = await fetch(`${t.url}/api/v1/documents`, { method: "POST", headers: { authorization: `Bearer ${u.key}` }, body: form });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text };
  }

  /** Waits for the upload's job to finish, then for its row to leave QUEUED; both as the client sees them. */
  async function settled(up: { json: any }): Promise<{ job: any; doc: any }> {
    const job = await until("the job to finish", 120_000, async () => (await api(t, u.key, "GET", up.json.links.job)).json, (j) => j?.state === "completed" || j?.state === "failed");
    const doc = await until("the document to settle", 10_000, async () => (await api(t, u.key, "GET", up.json.links.self)).json, (d) => d?.status !== "queued");
    return { job, doc };
  }

  /** The source's chunks in the store, in order. */
  async function chunksOf(source: string) {
    const probe = (await t.stack.pool.inference[0]!.client.embed({ inputs: ["probe"], normalize: true, requestId: "" })).embeddings[0]!.values;
    const hits = await t.stack.store!.query(collection, probe, { topK: 1000, filter: { userId: u.userId, source } });
    return hits.sort((a, b) => a.payload.chunk! - b.payload.chunk!).map((h) => h.payload);
  }

  async function documentCount(): Promise<number> {
    return (await api(t, u.key, "GET", "/api/v1/documents?limit=200")).json.items.length;
  }

  it("an HTML page: its text in blocks, without script, style or navigation, titled by its <title>", async () => {
    const up = await api(t, u.key, "POST", "/api/v1/documents", { source: "caldera.html", media_type: "text/html", text: PAGE });
    assert.equal(up.status, 202, up.text);
    assert.equal(up.json.document.media_type, "text/html");
    assert.equal(up.json.document.bytes, Buffer.byteLength(PAGE));
    const { job, doc } = await settled(up);
    assert.equal(job.state, "completed", job.failed_reason);
    assert.deepEqual([doc.status, doc.chunks, doc.error], ["ready", job.result.chunks, null]);

    const chunks = await chunksOf("caldera.html");
    assert.equal(chunks.length, job.result.chunks);
    assert.ok(chunks.length > 0);
    const all = chunks.map((c) => c.text).join("\n");
    for (const want of ["Purgar los radiadores", "abra la válvula del radiador hasta que salga agua.", "La presión correcta es de 1,5 bar.", "Por debajo de 1 bar"])
      assert.ok(all.includes(want), `${want} is in the chunks: ${JSON.stringify(all)}`);
    assert.match(all, /Purgar los radiadores\n\nCon la calefacción apagada/, "the heading is its own block");
    for (const gone of ["script-que-no-debe-estar", "display: none", "Portada", "Menú-de-navegación", "<p>", "<h1>"])
      assert.ok(!all.includes(gone), `${gone} is not in the chunks`);
    assert.ok(chunks.every((c) => c.title === "Manual de la caldera" && c.kind === "document"), JSON.stringify(chunks.map((c) => c.title)));
    assert.equal(up.json.document.title, null, "uploaded without a title");
    assert.equal(doc.title, "Manual de la caldera", "the document is titled by its <title> once ingested");
  });

  it("a PDF as data_base64: each page's text in the chunks, the PDF's Title as the title; the same PDF as a multipart file is the same job", async () => {
    const pdf = makePdf({
      title: "Garantía del lavavajillas",
      pages: [["Garantía del lavavajillas modelo LV-300.", "La garantía cubre tres años desde la compra."], ["Para reclamar, llame al 900 123 456 con el número de serie."]],
    });
    const up = await api(t, u.key, "POST", "/api/v1/documents", { source: "garantia.pdf", data_base64: pdf.toString("base64"), tags: ["casa"] });
    assert.equal(up.status, 202, up.text);
    assert.equal(up.json.document.media_type, "application/pdf", "taken from the source's extension");
    assert.equal(up.json.document.bytes, pdf.length);

    // The same bytes under the same source, as a form: the job already there.
    const form = new FormData();
    form.append("file", new Blob([pdf], { type: "application/pdf" }), "garantia.pdf");
    form.append("tags", "casa");
    const again = await postForm(form);
    assert.equal(again.status, 202, again.text);
    assert.equal(again.json.document.id, up.json.document.id);
    assert.equal(again.json.job.id, up.json.job.id, "one job");

    const { job, doc } = await settled(up);
    assert.equal(job.state, "completed", job.failed_reason);
    assert.equal(doc.status, "ready");
    const chunks = await chunksOf("garantia.pdf");
    assert.equal(chunks.length, job.result.chunks);
    const all = chunks.map((c) => c.text).join("\n");
    assert.match(all, /La garantía cubre tres años desde la compra\.\n\nPara reclamar, llame al 900 123 456/, `pages are blocks: ${JSON.stringify(all)}`);
    assert.ok(chunks.every((c) => c.title === "Garantía del lavavajillas" && c.tags?.includes("casa")));
  });

  it("multipart uploads: source, title and repeated tags as form fields; the media type from the part, else the file name", async () => {
    const pdf = makePdf({ pages: [["Receta de la abuela: lentejas con chorizo."]] });
    const form = new FormData();
    form.append("file", new Blob([pdf], { type: "application/pdf" }), "receta.pdf");
    form.append("source", "recetas/lentejas.pdf");
    form.append("title", "Lentejas");
    form.append("tags", "cocina");
    form.append("tags", "familia");
    const up = await postForm(form);
    assert.equal(up.status, 202, up.text);
    assert.deepEqual([up.json.document.source, up.json.document.media_type, up.json.document.title], ["recetas/lentejas.pdf", "application/pdf", "Lentejas"]);

    // No type on the part (application/octet-stream) and no source: the file's name says both.
    const html = new FormData();
    html.append("file", new Blob([Buffer.from("<h1>Horario</h1><p>La farmacia abre a las nueve.</p>")]), "horario.htm");
    const up2 = await postForm(html);
    assert.equal(up2.status, 202, up2.text);
    assert.deepEqual([up2.json.document.source, up2.json.document.media_type], ["horario.htm", "text/html"]);

    for (const [u0, source, want, title] of [
      [up, "recetas/lentejas.pdf", "Receta de la abuela: lentejas con chorizo.", "Lentejas"],
      [up2, "horario.htm", "Horario\n\nLa farmacia abre a las nueve.", undefined],
    ] as const) {
      const { job, doc } = await settled(u0);
      assert.equal(job.state, "completed", job.failed_reason);
      assert.equal(doc.status, "ready");
      const chunks = await chunksOf(source);
      assert.equal(chunks.map((c) => c.text).join(""), want);
      assert.equal(chunks[0]!.title, title);
    }
    assert.deepEqual((await chunksOf("recetas/lentejas.pdf"))[0]!.tags, ["cocina", "familia"]);
  });

  it("refused at upload, with nothing stored: a fake PDF, text that is not UTF-8, both or neither content field, other media types, a file too large", async () => {
    const before = await documentCount();
    const fakePdf = Buffer.from("Esto no es un PDF, aunque se llame así.");
    const cases: [string, () => Promise<{ status: number; json: any; text: string }>, number, string, RegExp][] = [
      ["a fake PDF as data_base64", () => api(t, u.key, "POST", "/api/v1/documents", { source: "x.pdf", media_type: "application/pdf", data_base64: fakePdf.toString("base64") }), 400, "data_base64", /not a PDF/],
      [
        "a fake PDF as a file",
        () => {
          const f = new FormData();
          f.append("file", new Blob([fakePdf], { type: "application/pdf" }), "x.pdf");
          return postForm(f);
        },
        400,
        "file",
        /not a PDF/,
      ],
      ["a PDF as text", () => api(t, u.key, "POST", "/api/v1/documents", { source: "x.pdf", media_type: "application/pdf", text: "%PDF-1.4 ..." }), 400, "text", /data_base64/],
      ["text and data_base64", () => api(t, u.key, "POST", "/api/v1/documents", { source: "x.md", text: "hola", data_base64: "aG9sYQ==" }), 400, "data_base64", /not both/],
      ["neither", () => api(t, u.key, "POST", "/api/v1/documents", { source: "x.md" }), 400, "text", /required/],
      ["bad base64", () => api(t, u.key, "POST", "/api/v1/documents", { source: "x.pdf", data_base64: "%%%not base64%%%" }), 400, "data_base64", /not valid base64/],
      ["HTML that is not UTF-8", () => api(t, u.key, "POST", "/api/v1/documents", { source: "x.html", data_base64: Buffer.from([0x3c, 0x70, 0x3e, 0xf1, 0x3c]).toString("base64") }), 400, "data_base64", /not valid UTF-8/],
      ["a JSON media_type Jota does not read", () => api(t, u.key, "POST", "/api/v1/documents", { source: "x.doc", media_type: "application/msword", text: "x" }), 415, "media_type", /not a document format/],
      [
        "an image file",
        () => {
          const f = new FormData();
          f.append("file", new Blob([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0xff])], { type: "image/png" }), "foto.png");
          return postForm(f);
        },
        415,
        "file",
        /"image\/png" is not a document format/,
      ],
      [
        "a form field that is not one",
        () => {
          const f = new FormData();
          f.append("file", new Blob(["hola"]), "x.md");
          f.append("text", "hola");
          return postForm(f);
        },
        400,
        "text",
        /Unrecognized key/i,
      ],
      [
        "a form without the file",
        () => {
          const f = new FormData();
          f.append("source", "x.md");
          return postForm(f);
        },
        400,
        "file",
        /required/,
      ],
      [
        "a file larger than JOTA_MAX_BODY_BYTES",
        () => {
          const f = new FormData();
          f.append("file", new Blob([Buffer.concat([Buffer.from("%PDF-1.4\n"), Buffer.alloc(MAX_BODY + 1, 0x20)])], { type: "application/pdf" }), "big.pdf");
          return postForm(f);
        },
        413,
        "file",
        /larger than/,
      ],
      ["a body that is neither JSON nor a form", () => api(t, u.key, "POST", "/api/v1/documents", "<p>hola</p>", { "content-type": "text/html" }), 415, "", /application\/json or multipart\/form-data/],
    ];
    for (const [what, send, status, field, re] of cases) {
      const r = await send();
      assert.equal(r.status, status, `${what}: ${r.text}`);
      assert.equal(typeof r.json?.error?.code, "string", `${what}: the error shape`);
      if (field) assert.equal(r.json.error.details.field, field, `${what}: ${r.text}`);
      assert.match(r.json.error.message, re, `${what}: ${r.text}`);
    }
    assert.equal(await documentCount(), before, "no document row was made");
  });

  it("a PDF that cannot be read: the job fails at once with the reason, and the document is FAILED with it", async () => {
    const broken = Buffer.concat([Buffer.from("%PDF-1.7\n"), Buffer.from("1 0 obj << /Type /Catalog >> garbage without xref or trailer\n")]);
    for (const [source, bytes, reason] of [
      ["roto.pdf", broken, /ingest of "roto.pdf": the file is not a readable PDF/],
      ["cifrado.pdf", makePdf({ pages: [["Secreto."]], encrypted: true }), /ingest of "cifrado.pdf": the PDF is encrypted/],
      ["escaneado.pdf", makePdf({ pages: [[]] }), /ingest of "escaneado.pdf": the PDF has no text layer/],
    ] as const) {
      const up = await api(t, u.key, "POST", "/api/v1/documents", { source, media_type: "application/pdf", data_base64: bytes.toString("base64") });
      assert.equal(up.status, 202, `${source}: the upload itself is acceptable: ${up.text}`);
      const { job, doc } = await settled(up);
      assert.equal(job.state, "failed", source);
      assert.equal(job.attempts_made, 1, `${source}: not retried (retrying cannot help)`);
      assert.match(job.failed_reason, reason);
      assert.equal(doc.status, "failed");
      assert.match(doc.error, reason);
      assert.equal((await chunksOf(source)).length, 0);
    }

    // The same source again with a PDF that reads: a new job, READY.
    const fixed = makePdf({ pages: [["Ahora sí se puede leer."]] });
    const up = await api(t, u.key, "POST", "/api/v1/documents", { source: "roto.pdf", data_base64: fixed.toString("base64") });
    assert.equal(up.status, 202, up.text);
    const { job, doc } = await settled(up);
    assert.equal(job.state, "completed", job.failed_reason);
    assert.deepEqual([doc.status, doc.error], ["ready", null]);
    assert.equal((await chunksOf("roto.pdf")).map((c) => c.text).join(""), "Ahora sí se puede leer.");
  });
});
