// Ingestion: a document's text -> token-sized chunks -> embeddings from the
// inference engine -> points in the vector store. One call per document;
// BullMQ jobs wrap it elsewhere (it reports progress and honours an abort
// signal so that a job can show and cancel it).
//
// Chunking counts real tokens: the engine's Tokenize RPC with
// embedding_model set uses the embedding model's own vocabulary (the one
// Embed uses), so a chunk's size is what the model will see, not a
// characters-per-token guess. The text is cut only at natural boundaries,
// tried in order: blank lines (paragraphs, Markdown blocks), line breaks,
// sentence ends, spaces, and only for a run of text with none of those
// (a long URL, base64), fixed-size pieces. Pieces are packed into chunks of
// at most `chunkTokens` tokens; each chunk after the first begins with the
// previous one's last `overlapTokens` tokens or fewer (whole sentences where
// they fit, whole words otherwise), so text cut between two chunks is whole
// in one of them. Each chunk is a slice of the original
// text (offsets kept), so what is stored and shown is what the user wrote,
// not the tokenizer's lower-cased, re-spaced rendering of it.
//
// What is chunked is the upload's text as document-text.ts gives it: Markdown and
// plain text as they are, an HTML page's or a PDF's text (a PDF comes as
// base64 bytes). An upload without a title takes the one extraction found.
//
// Nothing is written until every chunk has been embedded: bad input, an
// engine failure or an abort leaves the store as it was. The writes of one
// (user, source) take turns in this process, and each asks stillWanted in
// its turn.
//
// Without a version, re-ingesting a source replaces its previous chunks
// (deleted just before the new ones are written, in the turn). With one (an
// upload: the worker passes its job id), the chunks' ids carry it
// (chunkPointId) and nothing else is deleted here. The turns and stillWanted
// cannot order ingest workers in two processes (the gateway's and the
// worker's): an older upload's job that passed stillWanted before the newer
// one wrote would, under shared "<source>#<chunk>" ids, delete the newer
// chunks or overwrite them with the older text while the row says READY for
// the newer. With versioned ids the late job only adds points of its own,
// which retrieval does not take (the row names the current job:
// retrieve.ts), and the job's tracker deletes them again; the replaced
// version is deleted by the newer job's tracker once the row names it
// (jobs/documents.ts), not here, where this job cannot know whether it is
// still the newest.
import type {
  EmbedRequest,
  EmbedResponse,
  InferenceInfo,
  TokenizeRequest,
  TokenizeResponse,
} from "../gen/jota/v1/inference";
import { ExtractError, documentMediaType, extractText, isBinaryMediaType } from "./document-text";
import { IngestError, SupersededError } from "./ingest-error";
import { checkPoints, chunkPointId, deleteSourceIfAny, type VectorPoint, type VectorStore } from "./vector/store";

export { IngestError, SupersededError };

/** What ingestion needs of an inference engine (InferenceEngineClient has it). */
export interface EmbeddingEngine {
  info(): Promise<InferenceInfo>;
  tokenize(req: TokenizeRequest): Promise<TokenizeResponse>;
  embed(req: EmbedRequest, timeoutMs?: number): Promise<EmbedResponse>;
}

export interface IngestDocument {
  userId: string;
  /** The document's identity: re-ingesting the same source replaces it. */
  source: string;
  /**
   * The document's content: its text, or with `encoding` "base64" its bytes
   * in base64 (a binary media type such as application/pdf comes only so).
   * The job id hashes source and this field (jobs/queues.ts): the same
   * content under the same source is the same job, text or PDF alike.
   */
  text: string;
  /** How `text` holds the content: absent, as text; "base64", as the upload's bytes. */
  encoding?: "base64";
  /** text/plain, text/markdown (the default), text/html or application/pdf: how the content becomes text (document-text.ts). */
  mediaType?: string;
  /** Default "document". */
  kind?: string;
  title?: string;
  language?: string;
  tags?: string[];
  /** The documents row this ingestion is for (uploads through the API); jobs/documents.ts keeps it in step. */
  documentId?: string;
}

export interface IngestProgress {
  /** tokenize: pieces of text counted; embed: chunks embedded; store: chunks written. */
  phase: "tokenize" | "embed" | "store";
  done: number;
  total: number;
}

export interface IngestOptions {
  engine: EmbeddingEngine;
  store: VectorStore;
  /** Most tokens in one chunk, not counting the model's [CLS]/[SEP]. Default 256. */
  chunkTokens?: number;
  /** At most this many tokens of a chunk's end begin the next chunk (whole sentences or words). Default 32. */
  overlapTokens?: number;
  /** Chunks per Embed call. Default 32. */
  embedBatch?: number;
  /** Concurrent Tokenize calls. Default 8. */
  tokenizeConcurrency?: number;
  onProgress?: (p: IngestProgress) => void;
  signal?: AbortSignal;
  /**
   * Asked just before the stored version is replaced: false when this
   * ingestion is no longer wanted (a newer upload of the source took its
   * place), and then it writes nothing (SupersededError).
   */
  stillWanted?: () => Promise<boolean>;
  /**
   * The upload this ingestion is for (one per upload: the worker makes it
   * from its job): in each chunk's point id, and then no earlier version is
   * deleted here (see the file's comment). No '#' or '@'.
   */
  version?: string;
}

export interface IngestResult {
  chunks: number;
  collection: string;
  /** Tokens embedded, as the engine counted them (special tokens included). */
  tokens: number;
  /** Chunks of an earlier version of the source that were replaced (0 with a version: its tracker deletes them). */
  replaced: number;
  /** The version the chunks carry (IngestOptions.version), if any. */
  version?: string;
  /** The title the chunks carry when extraction found it (an HTML <title>, a PDF's Title) and the document had none. */
  title?: string;
}

export interface Chunk {
  index: number;
  /** text.slice(start, end) */
  text: string;
  start: number;
  end: number;
  /** Tokens of the chunk's text (no special tokens). */
  tokens: number;
}

/** Tokens in a piece of text (no special tokens). */
export type TokenCounter = (text: string) => Promise<number>;

interface Piece {
  start: number;
  end: number;
  tokens: number;
}

// Boundaries, coarsest first. Each regex matches the separator that ends a
// piece; the separator stays with the piece before it, so pieces tile the text.
const BOUNDARIES = [/\n[ \t]*\n\s*/g, /\n/g, /(?<=[.!?;:])\s+/g, /\s+/g];
// For a run with no boundary at all: pieces of chunkTokens / 4 characters,
// which fit a chunk even for byte-level tokenizers (at most 4 tokens for one
// character: a UTF-8 sequence, one token per byte).
const HARD_SPLIT_DIVISOR = 4;

function splitAt(text: string, start: number, end: number, re: RegExp): [number, number][] {
  const out: [number, number][] = [];
  const s = text.slice(start, end);
  let from = 0;
  re.lastIndex = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    const cut = m.index + m[0].length;
    if (cut > from && cut < s.length) {
      out.push([start + from, start + cut]);
      from = cut;
    }
    if (m[0].length === 0) re.lastIndex++;
  }
  out.push([start + from, end]);
  return out;
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

/**
 * Splits `text` into chunks of at most `chunkTokens` tokens (as `count`
 * measures them) with about `overlapTokens` of overlap; see the file's
 * comment for where it cuts. Every character of the text is in some chunk.
 */
export async function chunkText(
  text: string,
  count: TokenCounter,
  opts: { chunkTokens: number; overlapTokens: number; concurrency?: number; onPieces?: (done: number, total: number) => void; signal?: AbortSignal },
): Promise<Chunk[]> {
  const { chunkTokens, overlapTokens } = opts;
  const concurrency = opts.concurrency ?? 8;
  let counted = 0;
  let known = 0;
  const measure = async (ranges: [number, number][]) =>
    mapLimit(ranges, concurrency, async ([s, e]) => {
      opts.signal?.throwIfAborted();
      const tokens = await count(text.slice(s, e));
      opts.onPieces?.(++counted, Math.max(known, counted));
      return { start: s, end: e, tokens };
    });

  // Pieces small enough to fit a chunk, refined level by level.
  const refine = async (start: number, end: number, level: number): Promise<Piece[]> => {
    if (level >= BOUNDARIES.length) {
      const out: [number, number][] = [];
      const step = Math.max(1, Math.floor(chunkTokens / HARD_SPLIT_DIVISOR));
      for (let s = start; s < end; s += step) out.push([s, Math.min(end, s + step)]);
      return measure(out);
    }
    const ranges = splitAt(text, start, end, BOUNDARIES[level]!);
    known += ranges.length;
    const pieces = await measure(ranges);
    const out: Piece[] = [];
    for (const p of pieces) {
      if (p.tokens <= chunkTokens) out.push(p);
      else out.push(...(await refine(p.start, p.end, level + 1)));
    }
    return out;
  };
  const pieces = (await refine(0, text.length, 0)).filter((p) => p.end > p.start);

  const chunks: Chunk[] = [];
  // A chunk starts at `start`, inside piece m (at its start, or later when
  // it begins with the previous chunk's overlap), and takes whole pieces
  // after that while they fit.
  let start = 0;
  let m = 0;
  for (;;) {
    opts.signal?.throwIfAborted();
    let tokens = start === pieces[m]!.start ? pieces[m]!.tokens : await count(text.slice(start, pieces[m]!.end));
    let j = m + 1;
    while (j < pieces.length && tokens + pieces[j]!.tokens <= chunkTokens) tokens += pieces[j++]!.tokens;
    // Counts of pieces add up to the count of their concatenation except
    // where a cut falls inside a word: measure the chunk itself and give
    // back pieces until it fits.
    let end = pieces[j - 1]!.end;
    let measured = await count(text.slice(start, end));
    while (measured > chunkTokens && j - 1 > m) {
      end = pieces[--j - 1]!.end;
      measured = await count(text.slice(start, end));
    }
    chunks.push({ index: chunks.length, text: text.slice(start, end), start, end, tokens: measured });
    if (j >= pieces.length) break;
    // The next chunk must get past this one's end: an overlap that leaves
    // no room for the next piece is dropped.
    const tail = overlapTokens > 0 ? await overlapStart(text, start, end, overlapTokens, count) : undefined;
    start = tail && tail.tokens + pieces[j]!.tokens <= chunkTokens ? tail.at : end;
    while (pieces[m]!.end <= start) m++;
  }
  return chunks;
}

// Where the next chunk starts so that it repeats at most `budget` tokens of
// the end of [start, end): the earliest sentence boundary that fits, or, when
// even the last sentence is too long, the earliest word boundary. Candidates
// lie in the chunk's last budget * 16 characters (no token is that long);
// the count shrinks as the position moves right, so a binary search finds it.
const SENTENCE_END = /(?<=[.!?;:])\s+|\n\s*/g;
const WORD_END = /\s+/g;

async function overlapStart(
  text: string,
  start: number,
  end: number,
  budget: number,
  count: TokenCounter,
): Promise<{ at: number; tokens: number } | undefined> {
  const from = Math.max(start + 1, end - budget * 16);
  const window = text.slice(from, end);
  for (const re of [SENTENCE_END, WORD_END]) {
    const candidates: number[] = [];
    re.lastIndex = 0;
    for (let mt = re.exec(window); mt; mt = re.exec(window)) {
      const p = from + mt.index + mt[0].length;
      if (p < end) candidates.push(p);
      if (mt[0].length === 0) re.lastIndex++;
    }
    let lo = 0;
    let hi = candidates.length; // the answer is candidates[lo], or none when lo === length
    const fits = new Map<number, number>();
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const tokens = await count(text.slice(candidates[mid]!, end));
      if (tokens <= budget) {
        fits.set(mid, tokens);
        hi = mid;
      } else lo = mid + 1;
    }
    if (lo < candidates.length) return { at: candidates[lo]!, tokens: fits.get(lo)! };
  }
  return undefined; // no boundary fits: no overlap
}

// Standard base64 with its padding, as Buffer#toString("base64") writes it.
// (One character class: a regex of repeated 4-character groups overflows V8's
// stack on a file of a few megabytes.)
const isBase64 = (s: string) => s.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(s);

function check(cond: unknown, message: string): asserts cond {
  if (!cond) throw new IngestError(message);
}

/** The writes under way (or waiting) per key: each runs once those before it have settled. */
const turns = new Map<string, Promise<unknown>>();

/**
 * Runs `fn` in the (user, source)'s turn among this process's writes of its
 * chunks: upkeep's re-embedding of a document (upkeep.ts) takes turns with
 * its ingestions.
 */
export function inSourceTurn<T>(userId: string, source: string, fn: () => Promise<T>): Promise<T> {
  return inTurn(`${userId}\0${source}`, fn);
}

async function inTurn<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const before = turns.get(key) ?? Promise.resolve();
  const mine = before.catch(() => {}).then(fn);
  const tail = mine.catch(() => {});
  turns.set(key, tail);
  try {
    return await mine;
  } finally {
    if (turns.get(key) === tail) turns.delete(key);
  }
}

/** What one Embed call gave, as embedBatched takes it. */
export interface EmbedCall {
  model: string;
  dimensions: number;
  vectors: number[][];
  /** Tokens embedded, when the caller's Embed reports them. */
  tokens?: number;
}

/**
 * Embeds `texts` in order, `batch` per call of `embed`: ingestion and
 * upkeep's re-embedding of documents (upkeep.ts) both embed chunks this way.
 * Every call must give one vector per input, of `dimensions` when given
 * and of one model throughout: vectors of two models, stored side by side,
 * would be compared as if they were alike (IngestError otherwise).
 */
export async function embedBatched(
  texts: readonly string[],
  embed: (inputs: string[]) => Promise<EmbedCall>,
  opts: { batch: number; dimensions?: number; signal?: AbortSignal; onBatch?: (done: number) => void },
): Promise<{ model: string; dimensions: number; vectors: number[][]; tokens: number }> {
  const vectors: number[][] = [];
  let tokens = 0;
  let model = "";
  let dimensions = opts.dimensions;
  for (let i = 0; i < texts.length; i += opts.batch) {
    opts.signal?.throwIfAborted();
    const batch = texts.slice(i, i + opts.batch);
    const res = await embed(batch);
    check(
      res.vectors.length === batch.length && (dimensions === undefined || res.dimensions === dimensions),
      `ingest: the engine returned ${res.vectors.length} embeddings of ${res.dimensions} dimensions for ${batch.length} inputs` +
        (dimensions === undefined ? "" : ` (expected ${dimensions} dimensions)`),
    );
    check(!model || !res.model || res.model === model, `ingest: the engine's embedding model changed from "${model}" to "${res.model}" between batches`);
    dimensions = res.dimensions;
    model = res.model || model;
    vectors.push(...res.vectors);
    tokens += res.tokens ?? 0;
    opts.onBatch?.(vectors.length);
  }
  opts.signal?.throwIfAborted();
  return { model, dimensions: dimensions ?? 0, vectors, tokens };
}

/** Chunks, embeds and stores one document; see the file's comment. */
export async function ingestDocument(doc: IngestDocument, opts: IngestOptions): Promise<IngestResult> {
  const chunkTokens = opts.chunkTokens ?? 256;
  const overlapTokens = opts.overlapTokens ?? 32;
  const embedBatch = opts.embedBatch ?? 32;
  const progress = opts.onProgress ?? (() => {});
  const signal = opts.signal;

  check(doc && typeof doc === "object", "ingest: no document");
  for (const f of ["userId", "source"] as const)
    check(typeof doc[f] === "string" && doc[f].length > 0, `ingest: document.${f} must be a non-empty string`);
  check(doc.kind === undefined || (typeof doc.kind === "string" && doc.kind.length > 0), `ingest of "${doc.source}": document.kind must be a non-empty string`);
  for (const f of ["title", "language"] as const)
    check(doc[f] === undefined || typeof doc[f] === "string", `ingest of "${doc.source}": document.${f} must be a string`);
  check(
    doc.tags === undefined || (Array.isArray(doc.tags) && doc.tags.every((t) => typeof t === "string" && t.length > 0)),
    `ingest of "${doc.source}": document.tags must be an array of non-empty strings`,
  );
  check(typeof doc.text === "string", `ingest of "${doc.source}": document.text must be a string`);
  check(doc.encoding === undefined || doc.encoding === "base64", `ingest of "${doc.source}": document.encoding must be "base64" or absent`);
  const mediaType = doc.mediaType === undefined ? "text/markdown" : typeof doc.mediaType === "string" ? documentMediaType(doc.mediaType) : undefined;
  check(mediaType, `ingest of "${doc.source}": document.mediaType ${JSON.stringify(doc.mediaType)} is not one of text/plain, text/markdown, text/html, application/pdf`);
  check(
    doc.encoding === "base64" || !isBinaryMediaType(mediaType),
    `ingest of "${doc.source}": ${mediaType} content must come as base64 bytes (document.encoding "base64")`,
  );
  check(doc.encoding !== "base64" || isBase64(doc.text), `ingest of "${doc.source}": document.text is not valid base64`);
  check(Number.isInteger(chunkTokens) && chunkTokens >= 8, `ingest: chunkTokens must be an integer >= 8, got ${chunkTokens}`);
  check(
    Number.isInteger(overlapTokens) && overlapTokens >= 0 && overlapTokens <= chunkTokens / 2,
    `ingest: overlapTokens must be an integer from 0 to chunkTokens / 2 (${chunkTokens / 2}), got ${overlapTokens}`,
  );
  check(Number.isInteger(embedBatch) && embedBatch >= 1 && embedBatch <= 1024, `ingest: embedBatch must be an integer from 1 to 1024`);

  // The upload's text first: an upload that gives none fails before the engine is asked anything.
  let text: string;
  let title = doc.title;
  try {
    const content = doc.encoding === "base64" ? Buffer.from(doc.text, "base64") : doc.text;
    const extracted = await extractText(mediaType, content, { signal });
    text = extracted.text;
    title ??= extracted.title;
  } catch (err) {
    if (err instanceof ExtractError) throw new ExtractError(`ingest of "${doc.source}": ${err.message}`);
    throw err;
  }
  check(text.trim().length > 0, `ingest of "${doc.source}": the document has no text`);
  signal?.throwIfAborted();

  const info = await opts.engine.info();
  const em = info.embeddingModel;
  check(em, "ingest: the inference engine has no embedding model (start it with --embed-model)");
  // Embed adds the model's special tokens ([CLS] ... [SEP]) to each input.
  const special =
    (await opts.engine.tokenize({ text: "a", addSpecial: true, parseSpecial: true, embeddingModel: true })).ids.length -
    (await opts.engine.tokenize({ text: "a", addSpecial: false, parseSpecial: true, embeddingModel: true })).ids.length;
  check(
    chunkTokens + special <= em.contextSize,
    `ingest: chunkTokens ${chunkTokens} (+${special} special tokens) exceeds the embedding model's ${em.contextSize}-token input`,
  );
  signal?.throwIfAborted();

  const count: TokenCounter = async (text) =>
    (await opts.engine.tokenize({ text, addSpecial: false, parseSpecial: true, embeddingModel: true })).ids.length;
  let pieces = 0;
  const chunks = await chunkText(text, count, {
    chunkTokens,
    overlapTokens,
    concurrency: opts.tokenizeConcurrency,
    signal,
    onPieces: (done, total) => {
      pieces = total;
      progress({ phase: "tokenize", done, total });
    },
  });
  // Chunking is over (packing and overlaps counted too): the phase's last event.
  progress({ phase: "tokenize", done: pieces, total: pieces });

  const { vectors, tokens, model: embeddedBy } = await embedBatched(
    chunks.map((c) => c.text),
    async (inputs) => {
      const res = await opts.engine.embed({ inputs, normalize: true, requestId: "" }, 300_000);
      return { model: res.model, dimensions: res.dimensions, vectors: res.embeddings.map((e) => e.values), tokens: res.totalTokens };
    },
    { batch: embedBatch, dimensions: em.embeddingSize, signal, onBatch: (done) => progress({ phase: "embed", done, total: chunks.length }) },
  );
  const model = embeddedBy || em.name;

  const collection = await opts.store.ensureCollection(model, em.embeddingSize);
  const points: VectorPoint[] = chunks.map((c, i) => ({
    id: chunkPointId(doc.source, c.index, opts.version),
    vector: vectors[i]!,
    payload: {
      userId: doc.userId,
      kind: doc.kind ?? "document",
      source: doc.source,
      ...(doc.language !== undefined ? { language: doc.language } : {}),
      ...(doc.tags !== undefined ? { tags: doc.tags } : {}),
      ...(title !== undefined ? { title } : {}),
      text: c.text,
      chunk: c.index,
    },
  }));

  // Everything the store would refuse is refused now, before the old
  // version is deleted.
  checkPoints(collection, points);
  const replaced = await inSourceTurn(doc.userId, doc.source, async () => {
    signal?.throwIfAborted();
    if (opts.stillWanted && !(await opts.stillWanted())) throw new SupersededError(doc.source);
    // With a version the older chunks stay until the row names this one (see the file's comment).
    const n = opts.version === undefined ? await deleteSourceIfAny(opts.store, doc.userId, collection.name, doc.source) : 0; // 0 for a first ingest
    await opts.store.upsert(collection.name, points);
    return n;
  });
  progress({ phase: "store", done: points.length, total: points.length });
  return {
    chunks: chunks.length,
    collection: collection.name,
    tokens,
    replaced,
    ...(opts.version !== undefined ? { version: opts.version } : {}),
    ...(title !== doc.title && title !== undefined ? { title } : {}),
  };
}
