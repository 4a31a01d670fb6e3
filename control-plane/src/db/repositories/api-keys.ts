// API keys: long-lived credentials of a user, with scopes.
import type { ApiKey, PrismaClient, User } from "@prisma/client";
import { NotFoundError, checkId } from "./errors";
import { keyset, type Page, type PageRequest } from "./pagination";
import type { SecretHasher } from "./secrets";

export interface NewApiKey {
  name: string;
  scopes: string[];
  expiresAt?: Date;
}

export class ApiKeyRepository {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly hasher: SecretHasher,
  ) {}

  /** Returns the secret once; only its HMAC is stored. */
  async create(userId: string, k: NewApiKey): Promise<{ key: ApiKey; secret: string }> {
    const s = this.hasher.issue("k");
    const key = await this.prisma.apiKey.create({
      data: { userId, name: k.name, scopes: k.scopes, expiresAt: k.expiresAt, prefix: s.prefix, hash: s.hash },
    });
    return { key, secret: s.secret };
  }

  /** Newest first. */
  async list(userId: string, req?: PageRequest): Promise<Page<ApiKey>> {
    const ks = keyset("createdAt", "desc", req);
    return ks.page(await this.prisma.apiKey.findMany({ where: { userId, ...ks.after }, orderBy: ks.orderBy, take: ks.take }));
  }

  /** Idempotent: revoking a revoked key keeps the time it was first revoked. */
  async revoke(userId: string, id: string): Promise<ApiKey> {
    const where = { id: checkId("api key", id), userId };
    await this.prisma.apiKey.updateMany({ where: { ...where, revokedAt: null }, data: { revokedAt: new Date() } });
    const key = await this.prisma.apiKey.findFirst({ where });
    if (!key) throw new NotFoundError("api key", id);
    return key;
  }

  /**
   * The id of the user who owns a key, or null. Not scoped by a user: it is
   * for the installation's operator (the CLI's `keys revoke <id>`), who then
   * acts through the scoped methods with that user id.
   */
  async ownerOf(id: string): Promise<string | null> {
    const key = await this.prisma.apiKey.findUnique({ where: { id: checkId("api key", id) }, select: { userId: true } });
    return key?.userId ?? null;
  }

  /**
   * Authentication: the key (and its user) for a presented secret, if it is
   * neither revoked nor expired and its user is not disabled. Not scoped by a
   * user, by nature: the secret is what identifies the user. Records its use.
   */
  async authenticate(secret: string, now = new Date()): Promise<{ key: ApiKey; user: User } | null> {
    const found = await this.prisma.apiKey.findUnique({ where: { hash: this.hasher.hash(secret) }, include: { user: true } });
    if (!found || found.revokedAt || (found.expiresAt && found.expiresAt <= now) || found.user.disabledAt) return null;
    const { user, ...key } = found;
    await this.prisma.apiKey.update({ where: { id: key.id }, data: { lastUsedAt: now } });
    return { key: { ...key, lastUsedAt: now }, user };
  }
}
