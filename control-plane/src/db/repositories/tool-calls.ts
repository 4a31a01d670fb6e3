// Tool calls made during a turn (home automation, MCP tools, ...).
import type { Prisma, PrismaClient, ToolCall } from "@prisma/client";
import { ConflictError, NotFoundError, checkId, scoped } from "./errors";

export interface NewToolCall {
  name: string;
  arguments: Prisma.InputJsonValue;
}

export class ToolCallRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /** Records a call the model asked for, on one of the user's requests. */
  async create(userId: string, requestId: string, c: NewToolCall): Promise<ToolCall> {
    const request = await this.prisma.request.findFirst({
      where: { id: checkId("request", requestId), userId },
      select: { conversationId: true },
    });
    if (!request) throw new NotFoundError("request", requestId);
    return this.prisma.toolCall.create({
      data: { userId, requestId, conversationId: request.conversationId, name: c.name, arguments: c.arguments },
    });
  }

  start(userId: string, id: string): Promise<ToolCall> {
    return this.#move(userId, id, ["PENDING"], { status: "RUNNING", startedAt: new Date() });
  }

  succeed(userId: string, id: string, result: Prisma.InputJsonValue): Promise<ToolCall> {
    return this.#move(userId, id, ["PENDING", "RUNNING"], { status: "SUCCEEDED", result, finishedAt: new Date() });
  }

  fail(userId: string, id: string, error: string): Promise<ToolCall> {
    return this.#move(userId, id, ["PENDING", "RUNNING"], { status: "FAILED", error, finishedAt: new Date() });
  }

  listByRequest(userId: string, requestId: string): Promise<ToolCall[]> {
    return this.prisma.toolCall.findMany({
      where: { userId, requestId: checkId("request", requestId) },
      orderBy: [{ createdAt: "asc" }, { id: "asc" }],
    });
  }

  async #move(
    userId: string,
    id: string,
    from: Array<ToolCall["status"]>,
    data: Prisma.ToolCallUncheckedUpdateInput,
  ): Promise<ToolCall> {
    checkId("tool call", id);
    const { count } = await this.prisma.toolCall.updateMany({ where: { id, userId, status: { in: from } }, data });
    const current = await scoped("tool call", id, () => this.prisma.toolCall.findFirstOrThrow({ where: { id, userId } }));
    if (count === 0) throw new ConflictError(`tool call ${id} is ${current.status}`);
    return current;
  }
}
