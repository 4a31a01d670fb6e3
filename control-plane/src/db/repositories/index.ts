// Every query of user data goes through these repositories, and every method
// that touches user data takes the user's id and filters on it: isolation
// between users is in the signatures, not in each caller's care. (The
// exceptions are named so: users themselves, and `authenticate`, where a
// secret is what identifies the user.)
import type { PrismaClient } from "@prisma/client";
import { ApiKeyRepository } from "./api-keys";
import { ConversationRepository } from "./conversations";
import { DeviceRepository } from "./devices";
import { MessageRepository } from "./messages";
import { RequestRepository } from "./requests";
import { ToolCallRepository } from "./tool-calls";
import { UserRepository } from "./users";

export interface Repositories {
  users: UserRepository;
  apiKeys: ApiKeyRepository;
  devices: DeviceRepository;
  conversations: ConversationRepository;
  messages: MessageRepository;
  requests: RequestRepository;
  toolCalls: ToolCallRepository;
}

export function createRepositories(prisma: PrismaClient): Repositories {
  return {
    users: new UserRepository(prisma),
    apiKeys: new ApiKeyRepository(prisma),
    devices: new DeviceRepository(prisma),
    conversations: new ConversationRepository(prisma),
    messages: new MessageRepository(prisma),
    requests: new RequestRepository(prisma),
    toolCalls: new ToolCallRepository(prisma),
  };
}

export { ConflictError, InvalidTransitionError, NotFoundError } from "./errors";
export { InvalidCursorError, type Page, type PageRequest } from "./pagination";
export type { FinalStatus, RequestDetails, RouteDecisionRecord, TurnOutcome } from "./requests";
export { ApiKeyRepository, ConversationRepository, DeviceRepository, MessageRepository, RequestRepository, ToolCallRepository, UserRepository };
