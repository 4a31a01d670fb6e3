// Small, valid PDFs written by hand for the extraction tests (control-plane
// and gateway): PDF 1.4, one Helvetica font (WinAnsi, so Latin-1 text such as
// "café" is real text), one text line per string, a correct xref table.

export interface PdfOptions {
  /** Each page's lines; an empty page draws a line instead of text (no text layer). */
  pages: string[][];
  /** The Info dictionary's Title. */
  title?: string;
  /**
   * An /Encrypt dictionary (standard security handler, RC4 40-bit) whose
   * user password is not the empty one: readers ask for a password.
   */
  encrypted?: boolean;
}

/** A PDF literal string: ( ) \ escaped, Latin-1. */
const literal = (s: string) => `(${s.replace(/[\\()]/g, (c) => `\\${c}`)})`;

export function makePdf(opts: PdfOptions): Buffer {
  const objs: string[] = [];
  const add = (body: string) => objs.push(body); // object number = index + 1
  add("<< /Type /Catalog /Pages 2 0 R >>");
  add(""); // 2: the page tree, once the pages have numbers
  add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>");
  const kids: number[] = [];
  for (const lines of opts.pages) {
    const ops = lines.length
      ? lines.map((l, k) => `BT /F1 12 Tf 72 ${720 - 16 * k} Td ${literal(l)} Tj ET`).join("\n")
      : "0.5 w 72 72 m 540 720 l S"; // a drawing, no text
    const contents = add(`<< /Length ${Buffer.byteLength(ops, "latin1")} >>\nstream\n${ops}\nendstream`);
    kids.push(add(`<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents ${contents} 0 R >>`));
  }
  objs[1] = `<< /Type /Pages /Kids [${kids.map((k) => `${k} 0 R`).join(" ")}] /Count ${kids.length} >>`;
  const info = opts.title !== undefined ? add(`<< /Title ${literal(opts.title)} /Producer (jota tests) >>`) : undefined;
  const hex32 = (byte: string) => `<${byte.repeat(32)}>`;
  const encrypt = opts.encrypted ? add(`<< /Filter /Standard /V 1 /R 2 /Length 40 /O ${hex32("7a")} /U ${hex32("3c")} /P -44 >>`) : undefined;

  let out = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n";
  const offsets: number[] = [];
  objs.forEach((body, i) => {
    offsets.push(Buffer.byteLength(out, "latin1"));
    out += `${i + 1} 0 obj\n${body}\nendobj\n`;
  });
  const xref = Buffer.byteLength(out, "latin1");
  out += `xref\n0 ${objs.length + 1}\n0000000000 65535 f \n${offsets.map((o) => `${String(o).padStart(10, "0")} 00000 n \n`).join("")}`;
  const trailer = [
    `/Size ${objs.length + 1}`,
    "/Root 1 0 R",
    ...(info ? [`/Info ${info} 0 R`] : []),
    ...(encrypt ? [`/Encrypt ${encrypt} 0 R`, `/ID [<${"0123456789abcdef".repeat(2)}> <${"0123456789abcdef".repeat(2)}>]`] : []),
  ];
  out += `trailer\n<< ${trailer.join(" ")} >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, "latin1");
}
