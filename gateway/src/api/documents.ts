// Documents a user gives Jota to remember, and the jobs that ingest them.
//
//   POST   /documents        202: the document is QUEUED and its ingest job submitted
//   GET    /documents        list, newest first (?limit=&cursor=)
//   GET    /documents/{id}   one, with its job's live status while QUEUED
//   DELETE /documents/{id}   204: the row, its chunks in the vector store, its waiting job
//   GET    /jobs/{id}        an ingest job's status and progress
//
// Uploading a source the user already has replaces it (the same row, a new
// job). Submitting the same content under the same source again is the same
// job while it waits or runs (jobs/queues.ts): nothing is ingested twice at
// once; once it has completed, uploading the content again ingests it again
// (the earlier upload may have been deleted or replaced since).
//
// Formats: text/plain, text/markdown, text/html and application/pdf. The
// body is JSON (the text as `text`, or the bytes as `data_base64`: a PDF
// comes so) or multipart/form-data (the file as the part `file`, the other
// fields as form fields: `curl -F file=@doc.pdf`). Either way a document is
// bounded by JOTA_MAX_BODY_BYTES (the JSON body, or the file). Only cheap
// checks happen here: a PDF must begin with %PDF-, text and HTML must be
// UTF-8. Turning HTML or a PDF into text is the ingest job's work
// (memory/document-text.ts): a PDF that turns out unreadable, encrypted or
// without text fails its job, and the document is FAILED with the reason.
import { Router, type NextFunction, type Request, type RequestHandler, type Response } from "express";
import type { Document } from "@prisma/client";
import multer from "multer";
import { z } from "zod";
import {
  DOCUMENT_MEDIA_TYPES,
  documentMediaType,
  ingestJobId,
  isBinaryMediaType,
  looksLikePdf,
  mediaTypeOfName,
  UnknownCollectionError,
  UnknownDocumentError,
  type DocumentMediaType,
  type IngestDocument,
  type IngestJobStatus,
} from "@jota/control-plane";
import type { GatewayContext } from "../context";
import { principal } from "../auth/middleware";
import { ApiError } from "../http/errors";
import { body, check, idParam, query } from "../http/validate";
import { Id, PageQuery, Timestamp, iso, isoOrNull, mount, pageOf, type RouteSpec } from "./schemas";

const MEDIA_TYPES = DOCUMENT_MEDIA_TYPES;

const Source = z.string().trim().min(1, "must not be empty").max(300);
const Tag = z.string().trim().min(1).max(64);
const describedFields = {
  title: z.string().trim().min(1).max(300).optional().meta({ description: "The document's title. Without one, its chunks carry the HTML page's <title> or the PDF's Title, if it has one." }),
  kind: z.string().trim().min(1).max(40).optional().meta({ description: "Default document." }),
  language: z.string().trim().min(2).max(16).optional(),
};

const UploadBody = z
  .object({
    source: Source.meta({ description: "The document's name for you (a file name, a URL): uploading it again replaces it." }),
    text: z
      .string()
      .refine((t) => t.trim() !== "", "must not be empty")
      .optional()
      .meta({ description: "The document's text (text/plain, text/markdown, text/html). Exactly one of text and data_base64." }),
    data_base64: z
      .string()
      .min(1, "must not be empty")
      .optional()
      .meta({ description: "The document's bytes in base64: a PDF comes so (any other media type may too; text must be UTF-8). Exactly one of text and data_base64." }),
    ...describedFields,
    media_type: z
      .enum(MEDIA_TYPES)
      .optional()
      .meta({
        description:
          "Default: text/markdown for text; for data_base64, what the source's extension says (.pdf, .html, .htm, .md, .txt), else application/pdf when the bytes begin with %PDF-, else text/markdown. Any other type: 415.",
      }),
    tags: z.array(Tag).max(16).optional(),
  })
  .strict();

/** The form fields of a multipart upload (the file is the part `file`). */
const UploadForm = z
  .object({
    source: Source.optional(),
    ...describedFields,
    media_type: z.string().optional(),
    tags: z.union([Tag, z.array(Tag).max(16)]).optional(),
  })
  .strict();

export const JobView = z
  .object({
    id: z.string(),
    state: z.enum(["waiting", "active", "completed", "failed", "delayed"]),
    source: z.string(),
    progress: z
      .object({ phase: z.enum(["tokenize", "embed", "store"]), done: z.number().int(), total: z.number().int() })
      .nullable()
      .meta({ description: "The last progress report, once the job has started." }),
    attempts_made: z.number().int(),
    failed_reason: z.string().nullable(),
    result: z.object({ chunks: z.number().int(), tokens: z.number().int(), replaced: z.number().int() }).nullable(),
    created_at: Timestamp,
    finished_at: Timestamp.nullable(),
  })
  .meta({ id: "Job", description: "An ingest job. Finished jobs stay readable for a day; the document row keeps the outcome after that." });

export const DocumentView = z
  .object({
    id: Id,
    source: z.string(),
    title: z.string().nullable(),
    kind: z.string(),
    media_type: z.string(),
    bytes: z.number().int(),
    status: z.enum(["queued", "ready", "failed"]),
    chunks: z.number().int().nullable(),
    error: z.string().nullable().meta({ description: "Why ingestion failed (status failed)." }),
    job_id: z.string().nullable(),
    job: JobView.nullable().optional().meta({ description: "The job's live status (GET of one queued document)." }),
    created_at: Timestamp,
    updated_at: Timestamp,
    ingested_at: Timestamp.nullable(),
  })
  .meta({ id: "Document" });

const Submitted = z
  .object({ document: DocumentView, job: z.object({ id: z.string(), state: JobView.shape.state }), links: z.object({ self: z.string(), job: z.string() }) })
  .meta({ id: "DocumentSubmitted" });

function documentView(d: Document, job?: IngestJobStatus | null): z.output<typeof DocumentView> {
  return {
    id: d.id,
    source: d.source,
    title: d.title,
    kind: d.kind,
    media_type: d.mediaType,
    bytes: d.bytes,
    status: d.status.toLowerCase() as "queued" | "ready" | "failed",
    chunks: d.chunks,
    error: d.error,
    job_id: d.jobId,
    ...(job !== undefined ? { job: job ? jobView(job) : null } : {}),
    created_at: iso(d.createdAt),
    updated_at: iso(d.updatedAt),
    ingested_at: isoOrNull(d.ingestedAt),
  };
}

/** The REST view of a job (also the `job` of a WS job frame: ws/frames.ts). */
export function jobView(j: IngestJobStatus): z.output<typeof JobView> {
  return {
    id: j.id,
    state: j.state,
    source: j.source,
    progress: j.progress ?? null,
    attempts_made: j.attemptsMade,
    failed_reason: j.failedReason ?? null,
    result: j.result ? { chunks: j.result.chunks, tokens: j.result.tokens, replaced: j.result.replaced } : null,
    created_at: iso(j.createdAt),
    finished_at: isoOrNull(j.finishedAt ?? null),
  };
}

const idDoc = { id: { description: "The document id.", schema: Id } };

export const documentRoutes = {
  upload: {
    method: "post",
    path: "/documents",
    operationId: "uploadDocument",
    summary: "Give Jota a document to remember",
    description:
      "The document is stored QUEUED and an ingest job extracts its text (HTML, PDF), chunks, embeds and indexes it; follow it at links.job. " +
      "Formats: text/plain, text/markdown, text/html, application/pdf. The body is this JSON object, or multipart/form-data with the file as the part `file` " +
      "and source, title, kind, media_type, language and tags (repeated) as form fields; there the media type is the media_type field, else the part's " +
      "Content-Type, else the file name's extension, else the content's (%PDF-: a PDF, UTF-8: text/markdown), and source defaults to the file name. " +
      "400 validation_error names the field (text and data_base64 both or neither; a PDF that does not begin with %PDF-; text that is not UTF-8); " +
      "413 for a body (or file) over JOTA_MAX_BODY_BYTES; 415 for another media type or body type. " +
      "A PDF that cannot be read (broken, encrypted, no text layer) fails its job: the document becomes failed with the reason. " +
      "503 jobs_unavailable when the job queue cannot be reached (nothing is queued then).",
    tags: ["memory"],
    auth: "memory",
    body: UploadBody,
    formBody: UploadForm.extend({
      file: z.string().meta({ format: "binary", description: "The document (its part's Content-Type or file name gives the media type when the media_type field does not)." }),
    }),
    responses: { 202: { description: "Queued.", schema: Submitted, headers: { Location: "The document's URL." } } },
    errors: [503],
  },
  list: {
    method: "get",
    path: "/documents",
    operationId: "listDocuments",
    summary: "The caller's documents, newest first",
    tags: ["memory"],
    auth: "memory",
    query: PageQuery,
    responses: { 200: { description: "One page of documents.", schema: pageOf(DocumentView) } },
  },
  get: {
    method: "get",
    path: "/documents/:id",
    operationId: "getDocument",
    summary: "One document (with its job's live status while queued)",
    tags: ["memory"],
    auth: "memory",
    params: idDoc,
    responses: { 200: { description: "The document.", schema: DocumentView } },
  },
  delete: {
    method: "delete",
    path: "/documents/:id",
    operationId: "deleteDocument",
    summary: "Forget a document: its row, its chunks, its waiting job, its text in past turns' sources",
    description:
      "Past turns that cited the document keep the citation without its text (`text` empty, `erased: true`), as for a forgotten memory. " +
      "503 jobs_unavailable when the vector store cannot delete the chunks now: then nothing is deleted.",
    tags: ["memory"],
    auth: "memory",
    params: idDoc,
    responses: { 204: { description: "Forgotten." } },
    errors: [503],
  },
  job: {
    method: "get",
    path: "/jobs/:id",
    operationId: "getJob",
    summary: "An ingest job's status and progress",
    tags: ["memory"],
    auth: "memory",
    params: { id: { description: "The job id (from the upload's answer).", schema: z.string() } },
    responses: { 200: { description: "The job.", schema: JobView } },
    errors: [503],
  },
} satisfies Record<string, RouteSpec>;

/** An upload, checked: what the row and the ingest job are made of. */
interface Upload {
  source: string;
  title?: string;
  kind?: string;
  language?: string;
  tags?: string[];
  mediaType: DocumentMediaType;
  /** The text, or (encoding base64) the bytes in base64. */
  content: string;
  encoding?: "base64";
  bytes: number;
}

type Fields = Pick<Upload, "source" | "title" | "kind" | "language" | "tags">;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** 415 naming the field: `type` is a media type Jota does not read, or (undefined) content of no type Jota can tell. */
function unsupportedMediaType(field: string, type: string | undefined): ApiError {
  const what =
    type === undefined
      ? "the content is neither a PDF nor UTF-8 text, and no media_type says what it is"
      : `${JSON.stringify(type)} is not a document format Jota reads`;
  return new ApiError(415, "unsupported_media_type", `${field}: ${what} (it reads ${MEDIA_TYPES.join(", ")})`, {
    field,
    media_type: type ?? null,
    supported: [...MEDIA_TYPES],
  });
}

/** base64 (standard or URL-safe, padded or not, line breaks allowed) -> bytes; undefined when it is not base64. */
function decodeBase64(s: string): Buffer | undefined {
  const t = s.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(t) || t.length % 4 === 1 || (t.endsWith("=") && t.length % 4 !== 0)) return undefined;
  return Buffer.from(t, "base64"); // Node reads the URL-safe alphabet too
}

/** The media type of content with none declared: its name's extension, else a PDF by its magic, else UTF-8 text as Markdown. */
function guessMediaType(names: (string | undefined)[], bytes: Buffer): DocumentMediaType | undefined {
  for (const n of names) {
    const t = n ? mediaTypeOfName(n) : undefined;
    if (t) return t;
  }
  if (looksLikePdf(bytes)) return "application/pdf";
  try {
    utf8.decode(bytes);
    return "text/markdown";
  } catch {
    return undefined;
  }
}

/** Bytes of `mediaType`, given as `field`: a PDF must look like one, text must be UTF-8. */
function fromBytes(field: string, bytes: Buffer, mediaType: DocumentMediaType, f: Fields): Upload {
  if (bytes.length === 0) throw ApiError.validation(field, "must not be empty");
  if (isBinaryMediaType(mediaType)) {
    if (!looksLikePdf(bytes)) throw ApiError.validation(field, "is not a PDF: it does not begin with %PDF-", { media_type: mediaType });
    return { ...f, mediaType, content: bytes.toString("base64"), encoding: "base64", bytes: bytes.length };
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw ApiError.validation(field, `is not valid UTF-8 (${mediaType} is read as UTF-8)`, { media_type: mediaType });
  }
  if (text.trim() === "") throw ApiError.validation(field, "must not be empty");
  return { ...f, mediaType, content: text, bytes: bytes.length };
}

function jsonUpload(req: Request): Upload {
  // A media type Jota does not read is a 415 (not the 400 of any other bad value).
  const declared: unknown = req.is("application/json") ? req.body?.media_type : undefined;
  if (typeof declared === "string" && !(MEDIA_TYPES as readonly string[]).includes(declared)) throw unsupportedMediaType("media_type", declared);
  const b = body(req, UploadBody);
  const f: Fields = { source: b.source, title: b.title, kind: b.kind, language: b.language, tags: b.tags };
  if (b.text !== undefined && b.data_base64 !== undefined) throw ApiError.validation("data_base64", "send the document as text or as data_base64, not both");
  if (b.text !== undefined) {
    const mediaType = b.media_type ?? "text/markdown";
    if (isBinaryMediaType(mediaType))
      throw ApiError.validation("text", `${mediaType} is sent as data_base64 (or as a multipart file), not as text`, { media_type: mediaType });
    return { ...f, mediaType, content: b.text, bytes: Buffer.byteLength(b.text, "utf8") };
  }
  if (b.data_base64 === undefined) throw ApiError.validation("text", "required: the document's text, or its bytes as data_base64");
  const bytes = decodeBase64(b.data_base64);
  if (!bytes) throw ApiError.validation("data_base64", "is not valid base64");
  const mediaType = b.media_type ?? guessMediaType([b.source], bytes);
  if (!mediaType) throw unsupportedMediaType("data_base64", undefined);
  return fromBytes("data_base64", bytes, mediaType, f);
}

function formUpload(req: Request): Upload {
  const b = check(UploadForm, { ...req.body }, "body");
  const file = req.file;
  if (!file) throw ApiError.validation("file", "required: the document as the multipart part 'file'");
  if (b.source === undefined && !file.originalname?.trim()) throw ApiError.validation("source", "required (the file part has no file name to take it from)");
  const source = b.source ?? check(Source, file.originalname, "source");
  const f: Fields = { source, title: b.title, kind: b.kind, language: b.language, tags: typeof b.tags === "string" ? [b.tags] : b.tags };
  let mediaType: DocumentMediaType | undefined;
  if (b.media_type !== undefined) {
    mediaType = documentMediaType(b.media_type);
    if (!mediaType) throw unsupportedMediaType("media_type", b.media_type);
  } else {
    // The part's own type when it names one Jota reads; a generic or unknown one defers to the name and the content.
    const part = (file.mimetype ?? "").trim();
    mediaType = documentMediaType(part) ?? guessMediaType([file.originalname, source], file.buffer);
    if (!mediaType) throw unsupportedMediaType("file", part && part !== "application/octet-stream" ? part : undefined);
  }
  return fromBytes("file", file.buffer, mediaType, f);
}

/**
 * A multipart body's parts, the file in memory within `maxBytes` (file names
 * read as UTF-8, as browsers and curl send them); other bodies pass
 * untouched. Its errors are 400 / 413 naming the field.
 */
function multipartUpload(maxBytes: number): RequestHandler {
  const single = multer({ storage: multer.memoryStorage(), defParamCharset: "utf8", limits: { fileSize: maxBytes, files: 1, fields: 32, fieldSize: 64 << 10, parts: 40 } }).single("file");
  return (req: Request, res: Response, next: NextFunction) => {
    if (!req.is("multipart/form-data")) return next();
    single(req, res, (err?: unknown) => {
      if (!err) return next();
      if (err instanceof multer.MulterError) {
        const field = err.field ?? "file";
        switch (err.code) {
          case "LIMIT_FILE_SIZE":
            return next(new ApiError(413, "payload_too_large", `the file is larger than ${maxBytes} bytes (JOTA_MAX_BODY_BYTES)`, { field: "file", limit: maxBytes }));
          case "LIMIT_UNEXPECTED_FILE":
          case "LIMIT_FILE_COUNT":
            return next(ApiError.validation(field, "send one file, as the part 'file'"));
          case "LIMIT_FIELD_VALUE":
            return next(ApiError.validation(field, "the value is longer than 64 KiB"));
          default:
            return next(ApiError.validation(field, `the form is not acceptable: ${err.message}`));
        }
      }
      next(ApiError.validation("(body)", `the multipart body is malformed: ${(err as Error)?.message ?? String(err)}`));
    });
  };
}

function jobsOf(ctx: GatewayContext) {
  const jobs = ctx.stack.jobs;
  if (!jobs) throw new ApiError(503, "jobs_unavailable", "the job queue (Redis) is not available: see the server's log", {}, { "Retry-After": "30" });
  return jobs;
}

export function documentsRouter(ctx: GatewayContext): Router {
  const r = Router();

  mount(r, documentRoutes.upload, multipartUpload(ctx.config.gateway.maxBodyBytes), async (req, res) => {
    const p = principal(res);
    if (!req.is("multipart/form-data") && !req.is("application/json"))
      throw new ApiError(415, "unsupported_media_type", "send the document as application/json or multipart/form-data", { content_type: req.headers["content-type"] ?? null });
    const b = req.is("multipart/form-data") ? formUpload(req) : jsonUpload(req);
    const jobs = jobsOf(ctx);
    // Redis must answer before the row is touched: a re-upload would otherwise reset a READY document for nothing.
    try {
      await jobs.redis.connection.ping();
    } catch (err) {
      throw new ApiError(503, "jobs_unavailable", `the job queue (Redis) does not answer: ${(err as Error).message}`, {}, { "Retry-After": "30" });
    }
    const doc: IngestDocument = {
      userId: p.userId,
      source: b.source,
      text: b.content,
      ...(b.encoding ? { encoding: b.encoding } : {}),
      mediaType: b.mediaType,
      title: b.title,
      kind: b.kind,
      language: b.language,
      tags: b.tags,
    };
    // The row first, naming the job: whatever the job does, it finds its row (jobs/documents.ts).
    const row = await ctx.repos.documents.queue(p.userId, {
      source: b.source,
      title: b.title,
      kind: b.kind,
      mediaType: b.mediaType,
      bytes: b.bytes,
      jobId: ingestJobId(doc),
    });
    let submitted;
    try {
      // A completed job of the same content (kept for a day) belongs to an earlier upload that was since
      // deleted or replaced: this upload ingests again. One waiting or running is this same upload, twice.
      if ((await jobs.queue.queue.getJobState(row.jobId!)) === "completed") await jobs.queue.queue.remove(row.jobId!);
      submitted = await jobs.queue.submitIngest({ ...doc, documentId: row.id });
    } catch (err) {
      await ctx.repos.documents.failed(p.userId, b.source, row.jobId!, "the job queue could not take it").catch(() => {});
      throw new ApiError(503, "jobs_unavailable", `the job queue (Redis) could not take the document: ${(err as Error).message}`, {}, { "Retry-After": "30" });
    }
    res
      .status(202)
      .location(`/api/v1/documents/${row.id}`)
      .json({
        document: documentView(row),
        job: { id: submitted.jobId, state: submitted.state },
        links: { self: `/api/v1/documents/${row.id}`, job: `/api/v1/jobs/${encodeURIComponent(submitted.jobId)}` },
      } satisfies z.output<typeof Submitted>);
  });

  mount(r, documentRoutes.list, async (req, res) => {
    const p = principal(res);
    const q = query(req, PageQuery);
    const page = await ctx.repos.documents.list(p.userId, { limit: q.limit, cursor: q.cursor });
    res.json({ items: page.items.map((d) => documentView(d)), next_cursor: page.nextCursor ?? null });
  });

  mount(r, documentRoutes.get, async (req, res) => {
    const p = principal(res);
    const d = await ctx.repos.documents.get(p.userId, idParam(req, "id", "document"));
    const live = d.status === "QUEUED" && d.jobId && ctx.stack.jobs ? ((await ctx.stack.jobs.queue.getJob(p.userId, d.jobId).catch(() => undefined)) ?? null) : undefined;
    res.json(documentView(d, live));
  });

  mount(r, documentRoutes.delete, async (req, res) => {
    const p = principal(res);
    const d = await ctx.repos.documents.get(p.userId, idParam(req, "id", "document"));
    // The chunks first: a 204 must mean the document can no longer be retrieved. When they cannot be
    // deleted now, nothing is, and the caller can try again.
    if (d.collection) {
      const store = ctx.stack.store;
      if (!store) throw new ApiError(503, "jobs_unavailable", "the vector store is not available: the document's chunks cannot be deleted now", {}, { "Retry-After": "30" });
      try {
        await store.deleteBySource(p.userId, d.collection, d.source);
      } catch (err) {
        if (!(err instanceof UnknownDocumentError) && !(err instanceof UnknownCollectionError))
          throw new ApiError(503, "jobs_unavailable", `the vector store could not delete the document's chunks: ${(err as Error).message}`, {}, { "Retry-After": "30" });
      }
    }
    // Then its text in the sources of past turns that cited it (as forgetting a memory does), before the row:
    // should this fail, the document is still there to delete again. The note comes first: a turn that
    // retrieved the chunks before they went and is written after this erasure finds it when it ends.
    await ctx.repos.documents.noteErased(p.userId, d.source);
    await ctx.repos.requests.eraseSource(p.userId, d.source);
    await ctx.repos.documents.delete(p.userId, d.id);
    // A job still waiting goes; one running finds no row when it ends and deletes what it wrote (jobs/documents.ts).
    // An upload of the same text since then has the same job id: that job is the new upload's now.
    if (d.jobId && ctx.stack.jobs && (await ctx.repos.documents.bySource(p.userId, d.source))?.jobId !== d.jobId)
      await ctx.stack.jobs.queue.queue.remove(d.jobId).catch(() => 0);
    res.status(204).end();
  });

  mount(r, documentRoutes.job, async (req, res) => {
    const p = principal(res);
    const id = String(req.params.id);
    const j = await jobsOf(ctx).queue.getJob(p.userId, id);
    if (!j) throw ApiError.notFound("job", id);
    res.json(jobView(j));
  });
  return r;
}
