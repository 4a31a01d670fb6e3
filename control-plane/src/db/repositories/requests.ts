// Requests: the audited lifecycle of each turn.
//
//   PENDING ──> STREAMING ──> COMPLETED | FAILED | ABORTED
//      │            │
//      └──────> PROCESSING ──> COMPLETED | FAILED | ABORTED
//
// PROCESSING means the caller stopped waiting and the turn runs on in the
// background; it stays PROCESSING until it ends. A final state is final.
import type { Message, Prisma, PrismaClient, Request, RequestErrorType, RequestStatus, Route, RouteSource } from "@prisma/client";
import { InvalidTransitionError, NotFoundError, checkId, scoped } from "./errors";
import type { SqlRunner } from "../direct-sql";
import { uuidv7 } from "../ids";
import { keyset, type Page, type PageRequest } from "./pagination";
import { columnOf, fromJson, jsonObject } from "./rows";

const FROM: Record<RequestStatus, readonly RequestStatus[]> = {
  PENDING: [],
  STREAMING: ["PENDING"],
  PROCESSING: ["PENDING", "STREAMING"],
  COMPLETED: ["PENDING", "STREAMING", "PROCESSING"],
  FAILED: ["PENDING", "STREAMING", "PROCESSING"],
  ABORTED: ["PENDING", "STREAMING", "PROCESSING"],
};
const IN_FLIGHT: RequestStatus[] = ["PENDING", "STREAMING", "PROCESSING"];

export type FinalStatus = "COMPLETED" | "FAILED" | "ABORTED";

/** What may be recorded on a request besides its status. */
export type RequestDetails = Pick<
  Prisma.RequestUncheckedUpdateInput,
  | "engine"
  | "errorType"
  | "error"
  | "finishReason"
  | "promptTokens"
  | "cachedTokens"
  | "completionTokens"
  | "queueMs"
  | "prefillMs"
  | "decodeMs"
  | "ttftMs"
  | "totalMs"
  | "startedAt"
  | "finishedAt"
  | "sources"
>;

export interface RouteDecisionRecord {
  route: Route;
  source: RouteSource;
  detail?: string;
}

export interface TurnOutcome extends Omit<RequestDetails, "errorType" | "error"> {
  status: FinalStatus;
  /** The assistant's reply; for an aborted turn the part generated so far. Not stored when empty. */
  reply?: { content: string; tokens?: number };
  errorType?: RequestErrorType;
  error?: string;
}

export interface BeginTurnInput {
  content: string;
  /** The message's exact token count under the chat template, when known. */
  tokens?: number;
  traceId?: string;
  /** Ids made beforehand (ids.ts) when they must be known before the write. */
  requestId?: string;
  messageId?: string;
  /** STREAMING when the engine already has the turn (default PENDING). */
  status?: "PENDING" | "STREAMING";
  route?: RouteDecisionRecord;
  engine?: string;
  startedAt?: Date;
  /** The engine that now holds the conversation's KV cache, when it changed. */
  affinity?: string;
}

/** A message's token count, measured while its turn ran. */
export interface MessageTokens {
  id: string;
  tokens: number;
}

const REQUEST_JSON = jsonObject("Request", "r");
const MESSAGE_JSON = jsonObject("Message", "m");
const requestFromJson = fromJson<Request>("Request");
const messageFromJson = fromJson<Message>("Message");
const requestColumn = columnOf("Request");
/** Parameters that need a type the driver cannot infer from a JavaScript value. */
const CASTS: Record<string, string> = { errorType: '::"RequestErrorType"', sources: "::jsonb" };

export class RequestRepository {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly sql: SqlRunner,
  ) {}

  /**
   * The first write of a turn, one statement: the request and the user's
   * message together, so nothing the user said is lost whatever fails later.
   * A turn that already sent its Generate passes what it knows (status
   * STREAMING, route, engine, the engine now holding the KV cache as
   * `affinity`, and the ids it gave the engine), so the whole beginning of a
   * turn is one write (turn.ts).
   */
  async beginTurn(userId: string, conversationId: string, input: BeginTurnInput): Promise<{ request: Request; message: Message }> {
    checkId("conversation", conversationId);
    const now = new Date();
    const rows = await this.sql.query<{ request: Record<string, unknown>; message: Record<string, unknown> }>(
      `WITH c AS (
         UPDATE conversations
            SET last_message_at = $3, updated_at = $3,
                engine_affinity = COALESCE($13::text, engine_affinity),
                engine_affinity_at = CASE WHEN $13::text IS NULL THEN engine_affinity_at ELSE $3 END
          WHERE id = $2 AND user_id = $1
         RETURNING id),
       r AS (
         INSERT INTO requests (id, user_id, conversation_id, status, route, route_source, route_detail, engine, trace_id, started_at, created_at, updated_at)
         SELECT $4, $1, c.id, $6::"RequestStatus", $7::"Route", $8::"RouteSource", $9, $10, $11, $12, $3, $3 FROM c
         RETURNING *),
       m AS (
         INSERT INTO messages (id, conversation_id, user_id, role, content, tokens, request_id, created_at, updated_at)
         SELECT $5, r.conversation_id, $1, 'USER', $14, $15, r.id, $3, $3 FROM r
         RETURNING *)
       SELECT ${REQUEST_JSON} AS request, ${MESSAGE_JSON} AS message FROM r, m`,
      [
        userId,
        conversationId,
        now,
        input.requestId ?? uuidv7(),
        input.messageId ?? uuidv7(),
        input.status ?? "PENDING",
        input.route?.route ?? null,
        input.route?.source ?? null,
        input.route?.detail ?? null,
        input.engine ?? null,
        input.traceId ?? null,
        input.startedAt ?? null,
        input.affinity ?? null,
        input.content,
        input.tokens ?? null,
      ],
    );
    const row = rows[0];
    if (!row) throw new NotFoundError("conversation", conversationId);
    return { request: requestFromJson(row.request), message: messageFromJson(row.message) };
  }

  /**
   * The last write of a turn, one statement: its final state, the
   * assistant's reply (if any text was generated), and the token counts of
   * messages measured during the turn. InvalidTransitionError when the
   * request is already final.
   */
  async endTurn(userId: string, id: string, outcome: TurnOutcome, counted: readonly MessageTokens[] = []): Promise<{ request: Request; reply: Message | undefined }> {
    checkId("request", id);
    const { status, reply, ...details } = outcome;
    const now = new Date();
    const params: unknown[] = [userId, id, now, status, reply?.content ?? "", reply?.tokens ?? null, uuidv7(), counted.map((c) => c.id), counted.map((c) => c.tokens)];
    const sets = Object.entries({ finishedAt: now, ...details })
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => {
        params.push(k === "sources" ? JSON.stringify(v) : v);
        return `${requestColumn(k)} = $${params.length}${CASTS[k] ?? ""}`;
      });
    // Every data-modifying WITH runs to completion whether or not the final
    // SELECT reads it (PostgreSQL's rule), so c and t need no reference.
    const rows = await this.sql.query<{ request: Record<string, unknown>; reply: Record<string, unknown> | null }>(
      `WITH r AS (
         UPDATE requests SET status = $4::"RequestStatus", updated_at = $3${sets.map((x) => `, ${x}`).join("")}
          WHERE id = $2 AND user_id = $1 AND status IN ('PENDING', 'STREAMING', 'PROCESSING')
         RETURNING *),
       c AS (
         UPDATE conversations SET last_message_at = $3, updated_at = $3
          WHERE $5 <> '' AND id = (SELECT conversation_id FROM r) AND user_id = $1
         RETURNING id),
       m AS (
         INSERT INTO messages (id, conversation_id, user_id, request_id, role, content, tokens, created_at, updated_at)
         SELECT $7, r.conversation_id, $1, r.id, 'ASSISTANT', $5, $6, $3, $3 FROM r
          WHERE $5 <> '' AND r.conversation_id IS NOT NULL
         RETURNING *),
       t AS (
         UPDATE messages SET tokens = v.tokens, updated_at = $3
           FROM unnest($8::uuid[], $9::int[]) AS v(id, tokens)
          WHERE messages.id = v.id AND messages.user_id = $1 AND EXISTS (SELECT 1 FROM r)
         RETURNING messages.id)
       SELECT ${REQUEST_JSON} AS request, (SELECT ${MESSAGE_JSON} FROM m) AS reply FROM r`,
      params,
    );
    const row = rows[0];
    if (!row) {
      const current = await this.get(userId, id);
      throw new InvalidTransitionError(id, current.status, status);
    }
    return { request: requestFromJson(row.request), reply: row.reply ? messageFromJson(row.reply) : undefined };
  }

  /** Moves a request along its lifecycle (see the diagram above), recording details with it. */
  transition(userId: string, id: string, to: RequestStatus, details: RequestDetails = {}): Promise<Request> {
    return transition(this.prisma, userId, id, to, details);
  }

  /** Records details on a request that is still in flight (engine, timings as they become known). */
  async record(userId: string, id: string, details: RequestDetails): Promise<Request> {
    const { count } = await this.prisma.request.updateMany({
      where: { id: checkId("request", id), userId, status: { in: IN_FLIGHT } },
      data: details,
    });
    const current = await this.get(userId, id);
    if (count === 0) throw new InvalidTransitionError(id, current.status, current.status);
    return current;
  }

  setRoute(userId: string, id: string, d: RouteDecisionRecord): Promise<Request> {
    return scoped("request", id, () =>
      this.prisma.request.update({
        where: { id: checkId("request", id), userId },
        data: { route: d.route, routeSource: d.source, routeDetail: d.detail },
      }),
    );
  }

  async get(userId: string, id: string): Promise<Request> {
    const r = await this.prisma.request.findFirst({ where: { id: checkId("request", id), userId } });
    if (!r) throw new NotFoundError("request", id);
    return r;
  }

  /** Newest first, optionally of one conversation. */
  async list(userId: string, req?: PageRequest & { conversationId?: string }): Promise<Page<Request>> {
    const ks = keyset("createdAt", "desc", req);
    const conversationId = req?.conversationId === undefined ? undefined : checkId("conversation", req.conversationId);
    return ks.page(
      await this.prisma.request.findMany({ where: { userId, conversationId, ...ks.after }, orderBy: ks.orderBy, take: ks.take }),
    );
  }

  /**
   * The user erased a memory or document: the text of it that past turns
   * cited (their stored `sources`) is erased too. Each such source keeps its
   * id, source and score, with `text` emptied and `erased: true`. Only in
   * request `requestId` when given. Returns how many requests changed.
   */
  async eraseSource(userId: string, source: string, requestId?: string): Promise<number> {
    return this.prisma.$executeRaw`
      UPDATE requests r SET sources = (
        SELECT jsonb_agg(CASE WHEN s->>'source' = ${source} THEN s || '{"text": "", "erased": true}'::jsonb ELSE s END ORDER BY n)
        FROM jsonb_array_elements(r.sources) WITH ORDINALITY AS e(s, n)
      )
      WHERE r.user_id = ${userId}::uuid AND (${requestId ?? null}::uuid IS NULL OR r.id = ${requestId ?? null}::uuid)
        AND jsonb_typeof(r.sources) = 'array' AND r.sources @> jsonb_build_array(jsonb_build_object('source', ${source}::text))`;
  }

  /**
   * Retention (nightly upkeep): deletes finished requests (of every user)
   * created before `before`, with their tool calls; their messages stay, no
   * longer linked to a request. Running turns are never touched. Returns how
   * many were deleted.
   */
  /**
   * Ends the requests still in flight (PENDING, STREAMING, PROCESSING) that
   * were created before `before` as FAILED (INTERNAL) with `reason`: turns
   * whose process stopped while they ran, which nothing will ever finish
   * (their callers would poll a PROCESSING request forever). Across users,
   * by design: the embedded database's start-up and the nightly upkeep call
   * it. Returns how many.
   */
  async failInFlight(before: Date, reason: string): Promise<number> {
    const { count } = await this.prisma.request.updateMany({
      where: { createdAt: { lt: before }, status: { in: ["PENDING", "STREAMING", "PROCESSING"] } },
      data: { status: "FAILED", errorType: "INTERNAL", error: reason, finishedAt: new Date() },
    });
    return count;
  }

  async pruneFinishedBefore(before: Date): Promise<number> {
    const { count } = await this.prisma.request.deleteMany({
      where: { createdAt: { lt: before }, status: { in: ["COMPLETED", "FAILED", "ABORTED"] } },
    });
    return count;
  }
}

async function transition(
  db: Prisma.TransactionClient,
  userId: string,
  id: string,
  to: RequestStatus,
  details: RequestDetails,
): Promise<Request> {
  checkId("request", id);
  const { count } = await db.request.updateMany({ where: { id, userId, status: { in: [...FROM[to]] } }, data: { ...details, status: to } });
  const current = await db.request.findFirst({ where: { id, userId } });
  if (!current) throw new NotFoundError("request", id);
  if (count === 0) throw new InvalidTransitionError(id, current.status, to);
  return current;
}
