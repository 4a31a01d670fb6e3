// Messages of a conversation, in the order they were said.
import type { Message, MessageRole, PrismaClient } from "@prisma/client";
import { NotFoundError, checkId, scoped } from "./errors";
import type { SqlRunner } from "../direct-sql";
import { keyset, type Page, type PageRequest } from "./pagination";
import { columns } from "./rows";

const COLUMNS = columns("Message", "m");

export interface NewMessage {
  role: MessageRole;
  content: string;
  /** Tokens under the engine's chat template, when already known. */
  tokens?: number;
  requestId?: string;
}

export class MessageRepository {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly sql: SqlRunner,
  ) {}

  /** Adds a message to one of the user's conversations and marks the conversation active. */
  async append(userId: string, conversationId: string, m: NewMessage): Promise<Message> {
    checkId("conversation", conversationId);
    const now = new Date();
    const [, message] = await scoped("conversation", conversationId, () =>
      this.prisma.$transaction([
        // Fails (P2025 -> NotFoundError) unless the conversation is this user's.
        this.prisma.conversation.update({ where: { id: conversationId, userId }, data: { lastMessageAt: now } }),
        this.prisma.message.create({
          data: { userId, conversationId, role: m.role, content: m.content, tokens: m.tokens, requestId: m.requestId, createdAt: now },
        }),
      ]),
    );
    return message;
  }

  async get(userId: string, id: string): Promise<Message> {
    const m = await this.prisma.message.findFirst({ where: { id: checkId("message", id), userId } });
    if (!m) throw new NotFoundError("message", id);
    return m;
  }

  /** Oldest first, page by page. */
  async list(userId: string, conversationId: string, req?: PageRequest): Promise<Page<Message>> {
    const ks = keyset("createdAt", "asc", req);
    return ks.page(
      await this.prisma.message.findMany({
        where: { userId, conversationId: checkId("conversation", conversationId), ...ks.after },
        orderBy: ks.orderBy,
        take: ks.take,
      }),
    );
  }

  /** The messages a turn carried (the user's, and the reply when one was stored), oldest first. */
  ofRequest(userId: string, requestId: string): Promise<Message[]> {
    return this.ofRequests(userId, [requestId]);
  }

  /** The messages of several turns in one query (a page of requests), oldest first. */
  ofRequests(userId: string, requestIds: string[]): Promise<Message[]> {
    if (requestIds.length === 0) return Promise.resolve([]);
    return this.prisma.message.findMany({
      where: { userId, requestId: { in: requestIds.map((id) => checkId("request", id)) } },
      orderBy: [{ createdAt: "asc" }, { id: "asc" }],
    });
  }

  /** The newest `limit` messages, oldest first: the history window a prompt is built from. */
  /** Through the driver: every turn reads it before its engine call (direct-sql.ts). */
  async recent(userId: string, conversationId: string, limit: number): Promise<Message[]> {
    const rows = await this.sql.query<Message>(
      `SELECT ${COLUMNS} FROM messages m WHERE m.user_id = $1 AND m.conversation_id = $2 ORDER BY m.created_at DESC, m.id DESC LIMIT $3`,
      [userId, checkId("conversation", conversationId), limit],
    );
    return rows.reverse();
  }

  /**
   * Up to `limit` messages after message `afterId` (from the start when
   * null), oldest first, in the order the history has them.
   */
  async after(userId: string, conversationId: string, afterId: string | null, limit: number): Promise<Message[]> {
    const where = { userId, conversationId: checkId("conversation", conversationId) };
    let past = {};
    if (afterId) {
      const m = await this.prisma.message.findFirst({ where: { ...where, id: checkId("message", afterId) }, select: { createdAt: true, id: true } });
      if (m) past = { OR: [{ createdAt: { gt: m.createdAt } }, { createdAt: m.createdAt, id: { gt: m.id } }] };
    }
    return this.prisma.message.findMany({ where: { ...where, ...past }, orderBy: [{ createdAt: "asc" }, { id: "asc" }], take: limit });
  }

  /** Records a message's token count once the engine has counted it. */
  setTokens(userId: string, id: string, tokens: number): Promise<Message> {
    return scoped("message", id, () =>
      this.prisma.message.update({ where: { id: checkId("message", id), userId }, data: { tokens } }),
    );
  }
}
