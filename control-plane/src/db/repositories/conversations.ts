// Conversations: their owner, title, summary, and the engine that holds
// their KV cache (affinity).
import type { Conversation, PrismaClient } from "@prisma/client";
import { NotFoundError, checkId, scoped } from "./errors";
import { keyset, type Page, type PageRequest } from "./pagination";

export class ConversationRepository {
  constructor(private readonly prisma: PrismaClient) {}

  create(userId: string, c: { title?: string } = {}): Promise<Conversation> {
    return this.prisma.conversation.create({ data: { userId, title: c.title } });
  }

  async get(userId: string, id: string): Promise<Conversation> {
    const c = await this.prisma.conversation.findFirst({ where: { id: checkId("conversation", id), userId } });
    if (!c) throw new NotFoundError("conversation", id);
    return c;
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
