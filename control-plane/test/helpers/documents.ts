// Generated documents for the ingestion tests (control-plane and gateway).

/** Seeded PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A Markdown document of about `bytes` bytes: headings, paragraphs, lists,
 * code blocks, tables, a few accented words, and one long run with no space
 * at all (a URL) to make the chunker cut inside a "word". Every section is
 * numbered, so no two chunks have the same text.
 */
export function markdownDocument(bytes: number, seed = 1): string {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  const syllables = ["ka", "lo", "mi", "ren", "sto", "vu", "del", "an", "por", "que", "zi", "bel", "tra", "nu", "és", "ül"];
  const word = () => Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(syllables)).join("");
  const sentence = () => {
    const w = Array.from({ length: 6 + Math.floor(r() * 14) }, word);
    w[0] = w[0]![0]!.toUpperCase() + w[0]!.slice(1);
    return w.join(" ") + pick([".", ".", ".", "?", "!", ";"]);
  };
  const parts: string[] = ["# Field notes\n"];
  let size = parts[0]!.length;
  for (let s = 1; size < bytes; s++) {
    const section: string[] = [`## Section ${s}: ${word()} ${word()}`];
    const blocks = 2 + Math.floor(r() * 4);
    for (let b = 0; b < blocks; b++) {
      const kind = r();
      if (kind < 0.55) section.push(Array.from({ length: 2 + Math.floor(r() * 6) }, sentence).join(" "));
      else if (kind < 0.7) section.push(Array.from({ length: 3 + Math.floor(r() * 4) }, (_, i) => `- item ${s}.${i}: ${sentence()}`).join("\n"));
      else if (kind < 0.8) section.push("```ts\n" + `const s${s} = ${Math.floor(r() * 1e6)};\nfunction ${word()}() { return s${s} * 2; }\n` + "```");
      else if (kind < 0.9) section.push(`| key | value |\n|-----|-------|\n| ${word()} | ${s} |\n| ${word()} | ${b} |`);
      else section.push(`See https://example.org/${Array.from({ length: 90 }, word).join("")}?section=${s} for more.`);
    }
    const text = section.join("\n\n") + "\n\n";
    parts.push(text);
    size += Buffer.byteLength(text);
  }
  return parts.join("");
}
