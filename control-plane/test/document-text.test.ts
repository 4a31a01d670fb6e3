// extractText (memory/document-text.ts): uploads -> the text ingestion chunks.
// Real libraries on real inputs: HTML pages written here, PDFs written by
// hand (helpers/pdf.ts) and read by PDF.js.
import assert from "node:assert/strict";
import {
  documentMediaType,
  ExtractError,
  extractText,
  IngestError,
  looksLikePdf,
  mediaTypeOfName,
} from "../src/memory";
import { chunkText } from "../src/memory/ingest";
import { makePdf } from "./helpers/pdf";

const PAGE = `<!doctype html>
<html lang="es">
<head>
  <meta charset="utf-8">
  <title>Casa &amp; jardín</title>
  <style>body { color: red } .secret-style { display: none }</style>
  <script>var secretScript = "no debe aparecer";</script>
</head>
<body>
  <nav><a href="/">Inicio</a> | <a href="/menu">Menú de navegación</a></nav>
  <h1>El seguro de la casa</h1>
  <p>El seguro vence el <b>14 de marzo</b>. La póliza está en <a href="https://example.com/poliza">el cajón azul</a>.</p>
  <h2>Tareas pendientes</h2>
  <ul>
    <li>Llamar al agente</li>
    <li>Revisar la cobertura
      <ul><li>Incendio</li></ul>
    </li>
  </ul>
  <ol><li>Primero</li><li>Segundo</li></ol>
  <table><tr><th>Cosa</th><th>Dónde</th></tr><tr><td>Llaves</td><td>Maceta</td></tr></table>
  <img src="data:image/png;base64,iVBORw0KGgo=" alt="foto">
  <script type="module">console.log("otro script")</script>
  <div hidden>texto oculto</div>
  <p>Último párrafo.</p>
</body>
</html>`;

/** The blocks of a text: what lies between blank lines. */
const blocks = (t: string) => t.split(/\n[ \t]*\n/).map((b) => b.trim());

async function refused(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.ok(e instanceof ExtractError, `an ExtractError, not ${e?.name}: ${e?.message}`);
    assert.ok(e instanceof IngestError, "an IngestError: the ingest worker does not retry it");
    assert.match(e.message, re);
    return true;
  });
}

describe("extractText: uploads to text", function () {
  this.timeout(60_000);

  it("text/plain and text/markdown pass through untouched; bytes must be UTF-8", async () => {
    const md = "# Notas\n\n  Una línea con espacios al final   \n\n\n\nOtra.";
    assert.deepEqual(await extractText("text/markdown", md), { text: md });
    assert.deepEqual(await extractText("text/plain; charset=utf-8", md), { text: md });
    assert.deepEqual(await extractText("text/plain", Buffer.from(md)), { text: md });
    await refused(extractText("text/plain", Buffer.from([0x61, 0xff, 0x62])), /not valid UTF-8/);
  });

  it("HTML: headings, paragraphs and lists are blocks between blank lines; script, style and nav are dropped; the <title> is the title", async () => {
    const { text, title } = await extractText("text/html", PAGE);
    assert.equal(title, "Casa & jardín");
    const b = blocks(text);
    assert.deepEqual(b.slice(0, 4), [
      "El seguro de la casa",
      "El seguro vence el 14 de marzo. La póliza está en el cajón azul.",
      "Tareas pendientes",
      " * Llamar al agente\n * Revisar la cobertura\n   * Incendio".trim(),
    ]);
    assert.ok(b.includes("1. Primero\n 2. Segundo"), JSON.stringify(b));
    assert.ok(b.some((x) => /^Cosa +Dónde\nLlaves +Maceta$/.test(x)), `the table's rows stay rows: ${JSON.stringify(b)}`);
    assert.equal(b.at(-1), "Último párrafo.");
    for (const gone of ["secretScript", "otro script", "color: red", "Inicio", "navegación", "texto oculto", "Casa & jardín", "https://", "data:image", "foto"])
      assert.ok(!text.includes(gone), `${gone} is left out: ${JSON.stringify(text)}`);
    // Exactly one blank line between blocks, none at the ends, no trailing spaces.
    assert.ok(!/\n\n\n/.test(text) && text === text.trim() && !/[ \t]\n/.test(text), JSON.stringify(text));
    // The chunker cuts there first: with room for two blocks at most, every chunk holds whole blocks.
    const words: (s: string) => Promise<number> = async (s) => s.split(/\s+/).filter(Boolean).length;
    const chunks = await chunkText(text, words, { chunkTokens: 14, overlapTokens: 0 });
    assert.ok(chunks.length > 2);
    for (const c of chunks) assert.ok(c.text.trimEnd().split(/\n\n/).every((blk) => b.includes(blk.trim())), `whole blocks: ${JSON.stringify(c.text)}`);
  });

  it("HTML: bytes are decoded as UTF-8, a page without text or not UTF-8 is refused, no <title> is no title", async () => {
    const r = await extractText("application/xhtml+xml", Buffer.from("<p>Añadir <i>sal</i> al gusto.</p><p>Luego servir.</p>"));
    assert.deepEqual(r, { text: "Añadir sal al gusto.\n\nLuego servir." });
    await refused(extractText("text/html", "<html><head><title>Vacía</title><script>x()</script></head><body><nav>menu</nav></body></html>"), /the HTML page has no text/);
    await refused(extractText("text/html", Buffer.from([0x3c, 0x70, 0x3e, 0xe9, 0x3c])), /the HTML page is not valid UTF-8/);
    await refused(extractText("text/html", `${"<div>".repeat(20_000)}hondo${"</div>".repeat(20_000)}`), /nested too deeply/);
  });

  it("PDF: each page's text, pages separated by a blank line, the Info Title as the title", async () => {
    const pdf = makePdf({
      title: "Informe (borrador)",
      pages: [["Primera página del informe.", "Segunda línea: café y jalapeño."], [], ["Tercera página, la última."]],
    });
    assert.ok(looksLikePdf(pdf));
    const r = await extractText("application/pdf", pdf);
    assert.equal(r.pages, 3);
    assert.equal(r.title, "Informe (borrador)");
    assert.equal(r.text, "Primera página del informe.\nSegunda línea: café y jalapeño.\n\nTercera página, la última.");
    // Without a Title, no title.
    const bare = await extractText("application/pdf", makePdf({ pages: [["Solo texto."]] }));
    assert.deepEqual(bare, { text: "Solo texto.", pages: 1 });
  });

  it("PDF: not a PDF, a broken one, an encrypted one and one without a text layer are refused with the reason", async () => {
    await refused(extractText("application/pdf", Buffer.from("<html>not a pdf</html>")), /not a PDF \(it does not begin with %PDF-\)/);
    await refused(extractText("application/pdf", Buffer.from("%PDF-1.7\nthis is not the rest of a PDF\n%%EOF\n")), /not a readable PDF/);
    const whole = makePdf({ pages: [["Texto que se corta."]] });
    await refused(extractText("application/pdf", whole.subarray(0, 40)), /not a readable PDF|could not be read/);
    await refused(extractText("application/pdf", makePdf({ pages: [["Secreto."]], encrypted: true })), /the PDF is encrypted/);
    await refused(extractText("application/pdf", makePdf({ pages: [[], []] })), /the PDF has no text layer \(2 pages without text/);
    await refused(extractText("application/pdf", "%PDF-1.4 as a string"), /must be given as its bytes/);
  });

  it("PDF: an abort between pages stops it", async () => {
    const ac = new AbortController();
    ac.abort(new Error("job cancelled"));
    await assert.rejects(extractText("application/pdf", makePdf({ pages: [["Uno."], ["Dos."]] }), { signal: ac.signal }), /job cancelled/);
  });

  it("other media types are refused; names and aliases map to the four", async () => {
    await refused(extractText("image/png", Buffer.from([1, 2, 3])), /media type "image\/png" is not one ingestion reads/);
    assert.equal(documentMediaType("Text/HTML; charset=UTF-8"), "text/html");
    assert.equal(documentMediaType("text/x-markdown"), "text/markdown");
    assert.equal(documentMediaType("application/x-pdf"), "application/pdf");
    assert.equal(documentMediaType("application/octet-stream"), undefined);
    assert.deepEqual(
      ["a.PDF", "b.htm", "c.html", "d.md", "e.markdown", "f.txt", "g.docx", "noext"].map(mediaTypeOfName),
      ["application/pdf", "text/html", "text/html", "text/markdown", "text/markdown", "text/plain", undefined, undefined],
    );
  });
});
