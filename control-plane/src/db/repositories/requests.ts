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
import { keyset, type Page, type PageRequest } from "./pagination";

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

export class RequestRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /**
   * The first write of a turn, in one transaction: the request (PENDING) and
   * the user's message, so nothing the user said is lost whatever fails later.
   */
  async beginTurn(
    userId: string,
    conversationId: string,
    input: { content: string; tokens?: number; traceId?: string },
  ): Promise<{ request: Request; message: Message }> {
    checkId("conversation", conversationId);
    const now = new Date();
    const [, request] = await scoped("conversation", conversationId, () =>
      this.prisma.$transaction([
        this.prisma.conversation.update({ where: { id: conversationId, userId }, data: { lastMessageAt: now } }),
        this.prisma.request.create({
          data: {
            userId,
            conversationId,
            traceId: input.traceId,
            createdAt: now,
            messages: { create: { userId, conversationId, role: "USER", content: input.content, tokens: input.tokens, createdAt: now } },
          },
          include: { messages: true },
        }),
      ]),
    );
    const { messages, ...rest } = request;
    return { request: rest, message: messages[0]! };
  }

  /**
   * The last write of a turn, in one transaction: its final state, and the
   * assistant's reply (if any text was generated).
   */
  async endTurn(userId: string, id: string, outcome: TurnOutcome): Promise<{ request: Request; reply: Message | undefined }> {
    const { status, reply, ...details } = outcome;
    const now = new Date();
    return this.prisma.$transaction(async (tx) => {
      const request = await transition(tx, userId, id, status, { finishedAt: now, ...details });
      let message: Message | undefined;
      if (reply && reply.content !== "" && request.conversationId) {
        await tx.conversation.update({ where: { id: request.conversationId, userId }, data: { lastMessageAt: now } });
        message = await tx.message.create({
          data: {
            userId,
            conversationId: request.conversationId,
            requestId: id,
            role: "ASSISTANT",
            content: reply.content,
            tokens: reply.tokens,
            createdAt: now,
          },
        });
      }
      return { request, reply: message };
    });
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
