// An upload -> the text that ingestion chunks (ingest.ts), by media type:
//
// - text/plain, text/markdown: the text as it is (bytes: decoded as UTF-8,
//   refused when they are not UTF-8).
// - text/html: html-to-text. Block elements (headings, paragraphs, lists,
//   tables, quotes) become blocks separated by blank lines, which is where
//   the chunker cuts first; headings keep their case, links keep their text
//   (not their URL), tables stay rows of cells. Scripts, styles, navigation,
//   the <head>, media and form controls and [hidden] elements are left out.
//   The <title> comes back as the title.
// - application/pdf: PDF.js (the serverless build that unpdf bundles: pure
//   JavaScript, no worker, no network, no native canvas), text only: each
//   page's text, its lines as the PDF lays them out, pages separated by a
//   blank line. The document's Title (its Info dictionary) comes back as the
//   title. A file that is not a PDF, an encrypted one and one without a text
//   layer (scanned pages: no OCR here) are refused with the reason.
//
// Every refusal is an ExtractError, an IngestError: the upload itself is what
// is wrong, so an ingest job fails at once instead of trying again.
import { compile, type HtmlToTextOptions } from "html-to-text";
import { getDocumentProxy } from "unpdf";
import { IngestError } from "./ingest-error";

export const DOCUMENT_MEDIA_TYPES = ["text/plain", "text/markdown", "text/html", "application/pdf"] as const;
export type DocumentMediaType = (typeof DOCUMENT_MEDIA_TYPES)[number];

/** Media types whose content is bytes, not text: in an ingest job they travel base64-encoded. */
export const BINARY_MEDIA_TYPES: readonly DocumentMediaType[] = ["application/pdf"];

const ALIASES: Record<string, DocumentMediaType> = {
  "text/x-markdown": "text/markdown",
  "application/xhtml+xml": "text/html",
  "application/x-pdf": "application/pdf",
};

const EXTENSIONS: Record<string, DocumentMediaType> = {
  txt: "text/plain",
  text: "text/plain",
  md: "text/markdown",
  markdown: "text/markdown",
  html: "text/html",
  htm: "text/html",
  xhtml: "text/html",
  pdf: "application/pdf",
};

/**
 * `type` as one of DOCUMENT_MEDIA_TYPES: lower-cased, without parameters
 * (`; charset=utf-8`), aliases resolved (text/x-markdown,
 * application/xhtml+xml, application/x-pdf); undefined for any other type.
 */
export function documentMediaType(type: string): DocumentMediaType | undefined {
  const t = type.split(";")[0]!.trim().toLowerCase();
  return (DOCUMENT_MEDIA_TYPES as readonly string[]).includes(t) ? (t as DocumentMediaType) : ALIASES[t];
}

/** The media type a file name's extension stands for (doc.pdf, page.HTML); undefined when it says none of them. */
export function mediaTypeOfName(name: string): DocumentMediaType | undefined {
  const m = /\.([A-Za-z0-9]+)$/.exec(name.trim());
  return m ? EXTENSIONS[m[1]!.toLowerCase()] : undefined;
}

export function isBinaryMediaType(type: DocumentMediaType): boolean {
  return BINARY_MEDIA_TYPES.includes(type);
}

const PDF_MAGIC = [0x25, 0x50, 0x44, 0x46, 0x2d]; // %PDF-

/** Whether `bytes` begin as every PDF does: %PDF-. */
export function looksLikePdf(bytes: Uint8Array): boolean {
  return bytes.length >= PDF_MAGIC.length && PDF_MAGIC.every((b, i) => bytes[i] === b);
}

/** An upload that cannot be turned into text; the message says why. Ingestion does not retry it. */
export class ExtractError extends IngestError {
  constructor(message: string) {
    super(message);
    this.name = "ExtractError";
  }
}

export interface ExtractedText {
  /** What ingestion chunks. */
  text: string;
  /** The HTML <title> or the PDF's Title, when the upload has one. */
  title?: string;
  /** A PDF's page count. */
  pages?: number;
}

export interface ExtractOptions {
  /** Checked between PDF pages. */
  signal?: AbortSignal;
  /**
   * Most characters of text an HTML page or PDF may give (a few compressed
   * bytes can unpack into far more text than anyone uploads). Default 16 Mi.
   */
  maxChars?: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function decodeUtf8(content: string | Uint8Array, what: string): string {
  if (typeof content === "string") return content;
  try {
    return utf8.decode(content);
  } catch {
    throw new ExtractError(`${what} is not valid UTF-8 text`);
  }
}

// C0 controls other than tab and line feed (PDF.js gives U+0000 for glyphs
// it cannot map, and the stores refuse NUL in text), and carriage returns.
const CONTROLS = /[\u0000-\u0008\u000B-\u001F\u007F]/g;

/** Blocks separated by exactly one blank line, no trailing spaces, controls removed. */
function tidy(text: string): string {
  return text
    .replace(/\r\n?/g, "\n")
    .replace(CONTROLS, "")
    .replace(/[^\S\n]+$/gm, "")
    .replace(/\n{3,}/g, "\n\n")
    .replace(/^\n+|\n+$/g, "");
}

const skip = { format: "skip" } as const;
const block = { format: "block" } as const;
const HTML_OPTIONS: HtmlToTextOptions = {
  // Lines are the page's own: the chunker measures tokens, not columns.
  wordwrap: false,
  // The input is bounded where it enters (the upload); never cut it silently.
  limits: { maxInputLength: Number.MAX_SAFE_INTEGER },
  selectors: [
    ...["head", "script", "style", "noscript", "template", "nav", "svg", "canvas", "iframe", "object", "embed", "img", "picture", "video", "audio"].map(
      (selector) => ({ selector, ...skip }),
    ),
    ...["button", "select", "input", "textarea", "[hidden]"].map((selector) => ({ selector, ...skip })),
    { selector: "a", options: { ignoreHref: true } },
    ...["h1", "h2", "h3", "h4", "h5", "h6"].map((selector) => ({ selector, options: { uppercase: false, leadingLineBreaks: 2, trailingLineBreaks: 2 } })),
    { selector: "table", format: "dataTable", options: { uppercaseHeaderCells: false, maxColumnWidth: 200, leadingLineBreaks: 2, trailingLineBreaks: 2 } },
    ...["dt", "dd", "figcaption", "address", "summary", "details"].map((selector) => ({ selector, ...block })),
  ],
};
const htmlText = compile(HTML_OPTIONS);
// The first <title> alone (its entities decoded), or "" when there is none.
const htmlTitle = compile({ wordwrap: false, baseElements: { selectors: ["title"], returnDomByDefault: false }, limits: { maxBaseElements: 1 } });

function oneLine(s: string | undefined): string | undefined {
  const t = s?.replace(CONTROLS, "").replace(/\s+/g, " ").trim();
  return t ? t : undefined;
}

function extractHtml(content: string | Uint8Array, maxChars: number): ExtractedText {
  const html = decodeUtf8(content, "the HTML page");
  let text: string;
  let title: string | undefined;
  try {
    text = tidy(htmlText(html));
    title = oneLine(htmlTitle(html));
  } catch (err) {
    if (err instanceof RangeError) throw new ExtractError("the HTML page is nested too deeply to be read");
    throw new ExtractError(`the HTML page could not be read: ${(err as Error)?.message ?? String(err)}`);
  }
  if (text.length > maxChars) throw new ExtractError(`the HTML page's text is longer than ${maxChars} characters`);
  if (text.trim() === "") throw new ExtractError("the HTML page has no text (scripts, styles and navigation are left out)");
  return { text, ...(title ? { title } : {}) };
}

/** A PDF.js failure as the reason a person can act on. */
function pdfFailure(err: unknown): ExtractError {
  const e = err as { name?: string; message?: string };
  const detail = e?.message ?? String(err);
  switch (e?.name) {
    case "PasswordException":
      return new ExtractError("the PDF is encrypted (it needs a password to open): upload a copy without the password");
    case "InvalidPDFException":
      return new ExtractError(`the file is not a readable PDF (${detail})`);
    default:
      return new ExtractError(`the PDF could not be read: ${detail}`);
  }
}

async function extractPdf(content: string | Uint8Array, opts: ExtractOptions, maxChars: number): Promise<ExtractedText> {
  if (typeof content === "string") throw new ExtractError("a PDF must be given as its bytes, not as text");
  if (!looksLikePdf(content)) throw new ExtractError("the file is not a PDF (it does not begin with %PDF-)");
  const signal = opts.signal;
  // PDF.js may take the buffer over (transfer it): give it a copy of its own.
  let pdf: Awaited<ReturnType<typeof getDocumentProxy>>;
  try {
    pdf = await getDocumentProxy(new Uint8Array(content), { verbosity: 0 });
  } catch (err) {
    throw pdfFailure(err);
  }
  try {
    const pages: string[] = [];
    let chars = 0;
    for (let n = 1; n <= pdf.numPages; n++) {
      signal?.throwIfAborted();
      const page = await pdf.getPage(n);
      const content = await page.getTextContent();
      const text = tidy(content.items.map((item) => ("str" in item ? item.str + (item.hasEOL ? "\n" : "") : "")).join(""));
      page.cleanup();
      chars += text.length;
      if (chars > maxChars) throw new ExtractError(`the PDF's text is longer than ${maxChars} characters`);
      if (text.trim() !== "") pages.push(text);
    }
    if (pages.length === 0)
      throw new ExtractError(
        `the PDF has no text layer (${pdf.numPages} ${pdf.numPages === 1 ? "page" : "pages"} without text: scanned or image-only pages are not read, there is no OCR)`,
      );
    const info = (await pdf.getMetadata().catch(() => undefined))?.info as { Title?: unknown } | undefined;
    const title = typeof info?.Title === "string" ? oneLine(info.Title) : undefined;
    return { text: pages.join("\n\n"), pages: pdf.numPages, ...(title ? { title } : {}) };
  } catch (err) {
    if (err instanceof ExtractError || signal?.aborted) throw err;
    throw pdfFailure(err);
  } finally {
    await pdf.destroy().catch(() => {});
  }
}

/**
 * The text ingestion chunks for an upload of `mediaType` (one of
 * DOCUMENT_MEDIA_TYPES, or an alias documentMediaType knows): see the file's
 * comment. `content` is the upload's bytes, or for a text type its text.
 * Throws ExtractError for an upload that gives no text, with the reason.
 */
export async function extractText(mediaType: string, content: string | Uint8Array, opts: ExtractOptions = {}): Promise<ExtractedText> {
  const type = documentMediaType(mediaType);
  const maxChars = opts.maxChars ?? 16 * 1024 * 1024;
  switch (type) {
    case "text/plain":
    case "text/markdown":
      return { text: decodeUtf8(content, "the document") };
    case "text/html":
      return extractHtml(content, maxChars);
    case "application/pdf":
      return extractPdf(content, opts, maxChars);
    default:
      throw new ExtractError(`media type ${JSON.stringify(mediaType)} is not one ingestion reads (${DOCUMENT_MEDIA_TYPES.join(", ")})`);
  }
}
