// Conversations: their owner, title, summary, and the engine that holds
// their KV cache (affinity).
import type { Conversation, Message, PrismaClient } from "@prisma/client";
import { NotFoundError, checkId, scoped } from "./errors";
import type { SqlRunner } from "../direct-sql";
import { keyset, type Page, type PageRequest } from "./pagination";
import { columns, fromJson, jsonObject } from "./rows";

const COLUMNS = columns("Conversation", "c");
const MESSAGE_JSON = jsonObject("Message", "m");
const messageFromJson = fromJson<Message>("Message");

export class ConversationRepository {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly sql: SqlRunner,
  ) {}

  create(userId: string, c: { title?: string } = {}): Promise<Conversation> {
    return this.prisma.conversation.create({ data: { userId, title: c.title } });
  }

  /** Through the driver: every turn starts with it (direct-sql.ts). */
  async get(userId: string, id: string): Promise<Conversation> {
    const [c] = await this.sql.query<Conversation>(`SELECT ${COLUMNS} FROM conversations c WHERE c.id = $1 AND c.user_id = $2`, [checkId("conversation", id), userId]);
    if (!c) throw new NotFoundError("conversation", id);
    return c;
  }

  /**
   * A turn's first read, one statement: the conversation (NotFoundError
   * unless it is the user's) and its newest `limit` messages, oldest first.
   */
  async forTurn(userId: string, id: string, limit: number): Promise<{ conversation: Conversation; history: Message[] }> {
    const [row] = await this.sql.query<Conversation & { history: Record<string, unknown>[] }>(
      `SELECT ${COLUMNS},
              COALESCE((SELECT json_agg(${MESSAGE_JSON} ORDER BY m.created_at, m.id)
                          FROM (SELECT * FROM messages WHERE conversation_id = c.id AND user_id = c.user_id
                                ORDER BY created_at DESC, id DESC LIMIT $3) m), '[]') AS history
         FROM conversations c WHERE c.id = $1 AND c.user_id = $2`,
      [checkId("conversation", id), userId, limit],
    );
    if (!row) throw new NotFoundError("conversation", id);
    const { history, ...conversation } = row;
    return { conversation, history: history.map(messageFromJson) };
  }

  /** Most recently active first. */
  async list(userId: string, req?: PageRequest): Promise<Page<Conversation>> {
    const ks = keyset("lastMessageAt", "desc", req);
    return ks.page(
      await this.prisma.conversation.findMany({ where: { userId, ...ks.after }, orderBy: ks.orderBy, take: ks.take }),
    );
  }

  rename(userId: string, id: string, title: string): Promise<Conversation> {
    return this.#update(userId, id, { title });
  }

  /** Records which engine now holds the conversation's KV cache (null: none). */
  setAffinity(userId: string, id: string, engine: string | null): Promise<Conversation> {
    return this.#update(userId, id, { engineAffinity: engine, engineAffinityAt: engine ? new Date() : null });
  }

  /** Stores a summary of the history up to and including message `throughId`. */
  setSummary(userId: string, id: string, summary: string, throughId: string): Promise<Conversation> {
    return this.#update(userId, id, { summary, summaryThroughId: throughId, summaryUpdatedAt: new Date() });
  }

  /**
   * Stores a summary only if the stored one still covers through `expected`
   * (null: no summary yet): two summarizers never overwrite each other's
   * newer work. False when the conversation is gone or moved on.
   */
  async replaceSummary(userId: string, id: string, expected: string | null, summary: string, throughId: string): Promise<boolean> {
    const { count } = await this.prisma.conversation.updateMany({
      where: { id: checkId("conversation", id), userId, summaryThroughId: expected },
      data: { summary, summaryThroughId: throughId, summaryUpdatedAt: new Date() },
    });
    return count === 1;
  }

  /**
   * Moves the memory-extraction cursor from `expected` to `throughId`, only
   * if it is still at `expected`: of two extractions of the same messages,
   * one claims them and the other applies nothing. False when it lost (or
   * the conversation is gone). An extraction that fails gives its messages
   * back the same way (throughId = the cursor it found).
   */
  async advanceMemories(userId: string, id: string, expected: string | null, throughId: string | null): Promise<boolean> {
    const { count } = await this.prisma.conversation.updateMany({
      where: { id: checkId("conversation", id), userId, memoriesThroughId: expected },
      data: { memoriesThroughId: throughId },
    });
    return count === 1;
  }

  /**
   * Takes the newest of the user's conversations whose history digest is
   * `digest`, clearing the digest in the same statement: of two calls that
   * resend the same history, one gets the conversation and the other none
   * (on PostgreSQL the second UPDATE waits for the row, then re-checks the
   * digest). Undefined when no conversation has it.
   */
  async claimByDigest(userId: string, digest: string): Promise<Conversation | undefined> {
    const [c] = await this.sql.query<Conversation>(
      `UPDATE conversations c SET history_digest = NULL, updated_at = now()
        WHERE c.id = (SELECT id FROM conversations WHERE user_id = $1 AND history_digest = $2 ORDER BY last_message_at DESC, id DESC LIMIT 1)
          AND c.user_id = $1 AND c.history_digest = $2
        RETURNING ${COLUMNS}`,
      [userId, digest],
    );
    return c;
  }

  /** Sets the history digest only while it is `expected` (null: none). False when it was not. */
  async setDigest(userId: string, id: string, digest: string | null, expected: string | null): Promise<boolean> {
    const { count } = await this.prisma.conversation.updateMany({
      where: { id: checkId("conversation", id), userId, historyDigest: expected },
      data: { historyDigest: digest },
    });
    return count === 1;
  }

  /** Deletes the conversation with its messages, requests and tool calls. */
  async delete(userId: string, id: string): Promise<void> {
    await scoped("conversation", id, () => this.prisma.conversation.delete({ where: { id: checkId("conversation", id), userId } }));
  }

  #update(
    userId: string,
    id: string,
    data: Pick<Partial<Conversation>, "title" | "engineAffinity" | "engineAffinityAt" | "summary" | "summaryThroughId" | "summaryUpdatedAt">,
  ): Promise<Conversation> {
    return scoped("conversation", id, () =>
      this.prisma.conversation.update({ where: { id: checkId("conversation", id), userId }, data }),
    );
  }
}
