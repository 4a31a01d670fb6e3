// Every query of user data goes through these repositories, and every method
// that touches user data takes the user's id and filters on it: isolation
// between users is in the signatures, not in each caller's care. (The
// exceptions are named so: users themselves, `authenticate`, where a secret
// is what identifies the user, and `apiKeys.ownerOf`, the operator's lookup.)
//
// API keys and device tokens are stored as an HMAC under the server secret
// (secrets.ts): `secret` is required by the methods that create or check them.
import type { PrismaClient } from "@prisma/client";
import type { SqlRunner } from "../direct-sql";
import { ApiKeyRepository } from "./api-keys";
import { ConversationRepository } from "./conversations";
import { DeviceRepository } from "./devices";
import { DocumentRepository } from "./documents";
import { MemoryRepository } from "./memories";
import { MessageRepository } from "./messages";
import { RequestRepository } from "./requests";
import { SecretHasher } from "./secrets";
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
  documents: DocumentRepository;
  memories: MemoryRepository;
}

export interface RepositoryOptions {
  /** The server secret API keys and device tokens are hashed under. */
  secret?: string;
}

export function createRepositories(prisma: PrismaClient, sql: SqlRunner, opts: RepositoryOptions = {}): Repositories {
  const hasher = new SecretHasher(opts.secret);
  return {
    users: new UserRepository(prisma),
    apiKeys: new ApiKeyRepository(prisma, hasher),
    devices: new DeviceRepository(prisma, hasher),
    conversations: new ConversationRepository(prisma, sql),
    messages: new MessageRepository(prisma, sql),
    requests: new RequestRepository(prisma, sql),
    toolCalls: new ToolCallRepository(prisma),
    documents: new DocumentRepository(prisma),
    memories: new MemoryRepository(prisma),
  };
}

export { ConflictError, InvalidTransitionError, NotFoundError } from "./errors";
export { InvalidCursorError, type Page, type PageRequest } from "./pagination";
export { MissingSecretError } from "./secrets";
export type { FinalStatus, RequestDetails, RouteDecisionRecord, TurnOutcome } from "./requests";
export { memoryHash, type NewMemory } from "./memories";
export { ApiKeyRepository, ConversationRepository, DocumentRepository, MemoryRepository, DeviceRepository, MessageRepository, RequestRepository, ToolCallRepository, UserRepository };
