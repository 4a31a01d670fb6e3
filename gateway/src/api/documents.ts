// Documents a user gives Jota to remember, and the jobs that ingest them.
//
//   POST   /documents        202: the document is QUEUED and its ingest job submitted
//   GET    /documents        list, newest first (?limit=&cursor=)
//   GET    /documents/{id}   one, with its job's live status while QUEUED
//   DELETE /documents/{id}   204: the row, its chunks in the vector store, its waiting job
//   GET    /jobs/{id}        an ingest job's status and progress
//
// Uploading a source the user already has replaces it (the same row, a new
// job). Submitting the same text under the same source again is the same job
// while it waits or runs (jobs/queues.ts): nothing is ingested twice at once;
// once it has completed, uploading the text again ingests it again (the
// earlier upload may have been deleted or replaced since). The body is JSON, so a
// document is bounded by JOTA_MAX_BODY_BYTES like any other body.
import { Router } from "express";
import type { Document } from "@prisma/client";
import { z } from "zod";
import { ingestJobId, UnknownCollectionError, UnknownDocumentError, type IngestDocument, type IngestJobStatus } from "@jota/control-plane";
import type { GatewayContext } from "../context";
import { principal } from "../auth/middleware";
import { ApiError } from "../http/errors";
import { body, idParam, query } from "../http/validate";
import { Id, PageQuery, Timestamp, iso, isoOrNull, mount, pageOf, type RouteSpec } from "./schemas";

const MEDIA_TYPES = ["text/plain", "text/markdown"] as const;

const UploadBody = z
  .object({
    source: z.string().trim().min(1, "must not be empty").max(300).meta({ description: "The document's name for you (a file name, a URL): uploading it again replaces it." }),
    text: z.string().refine((t) => t.trim() !== "", "must not be empty").meta({ description: "The document's text." }),
    title: z.string().trim().min(1).max(300).optional(),
    kind: z.string().trim().min(1).max(40).optional().meta({ description: "Default document." }),
    media_type: z.enum(MEDIA_TYPES).optional().meta({ description: "Default text/markdown." }),
    language: z.string().trim().min(2).max(16).optional(),
    tags: z.array(z.string().trim().min(1).max(64)).max(16).optional(),
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

function jobView(j: IngestJobStatus): z.output<typeof JobView> {
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
      "The document is stored QUEUED and an ingest job chunks, embeds and indexes it; follow it at links.job. 503 jobs_unavailable when the job queue cannot be reached (nothing is queued then).",
    tags: ["memory"],
    auth: "memory",
    body: UploadBody,
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
    summary: "Forget a document: its row, its chunks, its waiting job",
    description: "503 jobs_unavailable when the vector store cannot delete the chunks now: then nothing is deleted.",
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

function jobsOf(ctx: GatewayContext) {
  const jobs = ctx.stack.jobs;
  if (!jobs) throw new ApiError(503, "jobs_unavailable", "the job queue (Redis) is not available: see the server's log", {}, { "Retry-After": "30" });
  return jobs;
}

export function documentsRouter(ctx: GatewayContext): Router {
  const r = Router();

  mount(r, documentRoutes.upload, async (req, res) => {
    const p = principal(res);
    const b = body(req, UploadBody);
    const jobs = jobsOf(ctx);
    // Redis must answer before the row is touched: a re-upload would otherwise reset a READY document for nothing.
    try {
      await jobs.redis.connection.ping();
    } catch (err) {
      throw new ApiError(503, "jobs_unavailable", `the job queue (Redis) does not answer: ${(err as Error).message}`, {}, { "Retry-After": "30" });
    }
    const doc: IngestDocument = { userId: p.userId, source: b.source, text: b.text, title: b.title, kind: b.kind, language: b.language, tags: b.tags };
    // The row first, naming the job: whatever the job does, it finds its row (jobs/documents.ts).
    const row = await ctx.repos.documents.queue(p.userId, {
      source: b.source,
      title: b.title,
      kind: b.kind,
      mediaType: b.media_type ?? "text/markdown",
      bytes: Buffer.byteLength(b.text, "utf8"),
      jobId: ingestJobId(doc),
    });
    let submitted;
    try {
      // A completed job of the same text (kept for a day) belongs to an earlier upload that was since
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
    await ctx.repos.documents.delete(p.userId, d.id);
    // A job still waiting goes; one running finds no row when it ends and deletes what it wrote (jobs/documents.ts).
    if (d.jobId && ctx.stack.jobs) await ctx.stack.jobs.queue.queue.remove(d.jobId).catch(() => 0);
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
