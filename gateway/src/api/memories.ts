// What Jota remembers about the caller: a user can always see and erase it.
//
//   GET    /memories        list, newest first (?limit=&cursor=)
//   POST   /memories        remember a fact now (201; 200 with the existing one for the same text)
//   GET    /memories/{id}   one
//   PATCH  /memories/{id}   correct its text
//   DELETE /memories/{id}   forget it (204)
//   DELETE /memories        forget everything (200, with how many)
//
// Memories are mostly written by the extraction job after turns
// (jobs/memory.ts); these routes write through the same Memories service,
// which keeps each row's vector in step (an add or a correction embeds the
// text: one Embed call, in the request). Forgetting deletes the vector before
// the row: a 204 means the memory can no longer be retrieved. An add whose
// vector cannot be stored takes its row back (503, nothing changed); when that
// fails too, the 503 names the memory that stays (details.memory_id).
import { Router } from "express";
import type { Memory } from "@prisma/client";
import { z } from "zod";
import {
  DimensionMismatchError,
  EngineCallError,
  EngineUnavailableError,
  InvalidMemoryError,
  InvalidVectorInputError,
  MAX_MEMORY_CHARS,
  MemoryAddNotUndoneError,
  NoEmbeddingEngineError,
  VectorStoreError,
  type Memories,
} from "@jota/control-plane";
import type { GatewayContext } from "../context";
import { principal } from "../auth/middleware";
import { ApiError } from "../http/errors";
import { body, idParam, query } from "../http/validate";
import { Id, PageQuery, Timestamp, iso, mount, pageOf, type RouteSpec } from "./schemas";

const MemoryText = z.string().meta({ description: `One fact about you, at most ${MAX_MEMORY_CHARS} characters (white space is collapsed).` });
const MemoryBody = z.object({ text: MemoryText }).strict();

export const MemoryView = z
  .object({
    id: Id,
    text: z.string(),
    origin: z.enum(["extracted", "user"]).meta({ description: "extracted: learnt from a conversation; user: added by you." }),
    conversation_id: Id.nullable().meta({ description: "The conversation it was learnt from." }),
    request_id: Id.nullable().meta({ description: "The turn it was learnt from." }),
    embedded: z.boolean().meta({ description: "Its vector is stored: retrieval can find it." }),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .meta({ id: "Memory" });

function memoryView(m: Memory): z.output<typeof MemoryView> {
  return {
    id: m.id,
    text: m.text,
    origin: m.origin === "user" ? "user" : "extracted",
    conversation_id: m.conversationId,
    request_id: m.requestId,
    embedded: m.embeddingModel !== null,
    created_at: iso(m.createdAt),
    updated_at: iso(m.updatedAt),
  };
}

const idMemory = { id: { description: "The memory id.", schema: Id } };
const UNAVAILABLE = "503 memory_unavailable when the vector store or an embedding engine cannot be used now: then nothing is changed.";
const ADD_UNAVAILABLE =
  "503 memory_unavailable when the vector store or an embedding engine cannot be used now: then nothing is changed, " +
  "unless the error's details name a `memory_id`: the memory was written but neither its vector nor taking it back succeeded (the database or the store is down), " +
  "so it stays, listed with `embedded: false`; retrieval does not use it until upkeep embeds it, and deleting it forgets it. " +
  "A 500 internal_error may name a `memory_id` the same way, when what failed was no outage.";

export const memoryRoutes = {
  list: {
    method: "get",
    path: "/memories",
    operationId: "listMemories",
    summary: "What Jota remembers about the caller, newest first",
    tags: ["memory"],
    auth: "memory",
    query: PageQuery,
    responses: { 200: { description: "One page of memories.", schema: pageOf(MemoryView) } },
  },
  create: {
    method: "post",
    path: "/memories",
    operationId: "createMemory",
    summary: "Remember a fact about the caller",
    description: `A memory with the same text (ignoring case and spacing) is answered instead of a second one (200). ${ADD_UNAVAILABLE}`,
    tags: ["memory"],
    auth: "memory",
    body: MemoryBody,
    responses: {
      201: { description: "Remembered.", schema: MemoryView, headers: { Location: "The memory's URL." } },
      200: { description: "Already remembered: the existing memory.", schema: MemoryView },
    },
    errors: [503],
  },
  get: {
    method: "get",
    path: "/memories/:id",
    operationId: "getMemory",
    summary: "One memory",
    tags: ["memory"],
    auth: "memory",
    params: idMemory,
    responses: { 200: { description: "The memory.", schema: MemoryView } },
  },
  update: {
    method: "patch",
    path: "/memories/:id",
    operationId: "updateMemory",
    summary: "Correct a memory's text",
    description: UNAVAILABLE,
    tags: ["memory"],
    auth: "memory",
    params: idMemory,
    body: MemoryBody,
    responses: { 200: { description: "The corrected memory.", schema: MemoryView } },
    errors: [503],
  },
  delete: {
    method: "delete",
    path: "/memories/:id",
    operationId: "deleteMemory",
    summary: "Forget one memory",
    description: UNAVAILABLE,
    tags: ["memory"],
    auth: "memory",
    params: idMemory,
    responses: { 204: { description: "Forgotten." } },
    errors: [503],
  },
  deleteAll: {
    method: "delete",
    path: "/memories",
    operationId: "deleteAllMemories",
    summary: "Forget everything Jota remembers about the caller",
    description: UNAVAILABLE,
    tags: ["memory"],
    auth: "memory",
    responses: { 200: { description: "Forgotten.", schema: z.object({ deleted: z.number().int() }).meta({ id: "MemoriesDeleted" }) } },
    errors: [503],
  },
} satisfies Record<string, RouteSpec>;

function memoriesOf(ctx: GatewayContext): Memories {
  const m = ctx.stack.memories;
  if (!m) throw new ApiError(503, "memory_unavailable", "the vector store could not be opened at start-up: see the server's log", {}, { "Retry-After": "30" });
  return m;
}

/** Errors of the memory service as the client sees them: its own input, or a part that is down (nothing changed). */
async function guarded<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (err instanceof InvalidMemoryError) throw ApiError.validation("text", err.message);
    if (err instanceof MemoryAddNotUndoneError) {
      // Something did change: the memory's row stays (not embedded). The status is the outage's, the message and
      // details say what is left, so the client does not take the 503 for "nothing changed".
      // Not undone because it failed (the row is not embedded), or because the row changed meanwhile (another
      // add or a correction has it now, which may have embedded it).
      const stuck = err.undoError !== undefined;
      const details = stuck ? { memory_id: err.memoryId, embedded: false } : { memory_id: err.memoryId };
      const down = unavailable(err.cause);
      // A fault, not an outage: a 500 whose message keeps the fault to the server's log (the cause is logged).
      if (!down)
        throw Object.assign(
          new ApiError(
            500,
            "internal_error",
            stuck
              ? `internal error; memory ${err.memoryId} stays, not yet embedded (deleting it forgets it)`
              : `internal error; memory ${err.memoryId} was changed meanwhile and stays (deleting it forgets it)`,
            details,
          ),
          { cause: err },
        );
      throw new ApiError(503, "memory_unavailable", err.message, details, down.headers);
    }
    throw unavailable(err) ?? err; // NotFoundError (404), and anything else: a 500 without its message
  }
}

/** The 503 for a part of the memory service that is down (nothing changed), or undefined for any other error. */
function unavailable(err: unknown): ApiError | undefined {
  if (err instanceof NoEmbeddingEngineError || err instanceof EngineUnavailableError || err instanceof EngineCallError)
    return new ApiError(503, "memory_unavailable", `no engine could embed the memory: ${err.message}`, {}, { "Retry-After": "5" });
  // A store that refuses what it is given (a dimension mismatch) is a fault to fix, not to wait out.
  if (err instanceof VectorStoreError && !(err instanceof DimensionMismatchError || err instanceof InvalidVectorInputError))
    return new ApiError(503, "memory_unavailable", `the vector store failed: ${err.message}`, {}, { "Retry-After": "30" });
  // Before the store's check, which knows some of the same codes: Prisma's messages name its call site, not for the client.
  if (isDatabaseConnectionError(err)) return new ApiError(503, "memory_unavailable", "the database is unreachable", {}, { "Retry-After": "30" });
  if (isStoreConnectionError(err)) return new ApiError(503, "memory_unavailable", `the vector store is unreachable: ${(err as Error).message}`, {}, { "Retry-After": "30" });
  return undefined;
}

/**
 * The store's own transport failing (Qdrant's HTTP client, a PostgreSQL
 * connection): an outage, unlike a bug. Errors from code, not from I/O, do
 * not have these shapes.
 */
function isStoreConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; name?: unknown; cause?: { code?: unknown } } | null;
  const code = typeof e?.code === "string" ? e.code : typeof e?.cause?.code === "string" ? e.cause.code : "";
  return /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|57P01|08\w{3})$/.test(code) || e?.name === "FetchError";
}

/** Prisma's codes for a database it cannot reach, lost, timed out on, or that has no connection free. */
const PRISMA_OUTAGE = /^(P1001|P1008|P1017|P2037)$/;
/** What @prisma/adapter-pg calls those, on the error's cause when Prisma passes it on. */
const ADAPTER_OUTAGE = new Set(["DatabaseNotReachable", "ConnectionClosed", "SocketTimeout", "TooManyConnections"]);

/**
 * The database failing as an outage does (Prisma over @prisma/adapter-pg): Prisma's own codes, the adapter's
 * kinds, PostgreSQL's shutting down or starting (57P01-57P03) and connection exceptions (08xxx) as the
 * adapter passes them on, and pg's error for a connection lost mid-query, which has no code.
 */
function isDatabaseConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown; cause?: { kind?: unknown; code?: unknown } } | null;
  if (typeof e?.code === "string" && PRISMA_OUTAGE.test(e.code)) return true;
  if (typeof e?.cause?.kind === "string" && ADAPTER_OUTAGE.has(e.cause.kind)) return true;
  if (typeof e?.cause?.code === "string" && /^(57P0[123]|08\w{3})$/.test(e.cause.code)) return true;
  return typeof e?.message === "string" && /^Connection terminated/.test(e.message);
}

export function memoriesRouter(ctx: GatewayContext): Router {
  const r = Router();

  mount(r, memoryRoutes.list, async (req, res) => {
    const p = principal(res);
    const q = query(req, PageQuery);
    const page = await ctx.repos.memories.list(p.userId, { limit: q.limit, cursor: q.cursor });
    res.json({ items: page.items.map(memoryView), next_cursor: page.nextCursor ?? null });
  });

  mount(r, memoryRoutes.create, async (req, res) => {
    const p = principal(res);
    const b = body(req, MemoryBody);
    const memories = memoriesOf(ctx);
    const { memory, created } = await guarded(() => memories.add(p.userId, { text: b.text, origin: "user" }));
    if (created) res.status(201).location(`/api/v1/memories/${memory.id}`);
    res.json(memoryView(memory));
  });

  mount(r, memoryRoutes.get, async (req, res) => {
    const p = principal(res);
    res.json(memoryView(await ctx.repos.memories.get(p.userId, idParam(req, "id", "memory"))));
  });

  mount(r, memoryRoutes.update, async (req, res) => {
    const p = principal(res);
    const id = idParam(req, "id", "memory");
    const b = body(req, MemoryBody);
    const memories = memoriesOf(ctx);
    res.json(memoryView(await guarded(() => memories.update(p.userId, id, b.text))));
  });

  mount(r, memoryRoutes.delete, async (req, res) => {
    const p = principal(res);
    const id = idParam(req, "id", "memory");
    const memories = memoriesOf(ctx);
    await guarded(() => memories.delete(p.userId, id));
    res.status(204).end();
  });

  mount(r, memoryRoutes.deleteAll, async (_req, res) => {
    const p = principal(res);
    const memories = memoriesOf(ctx);
    res.json({ deleted: await guarded(() => memories.deleteAll(p.userId)) });
  });

  return r;
}
