// API keys: long-lived credentials of a user, with scopes.
import type { ApiKey, PrismaClient, User } from "@prisma/client";
import { checkId, scoped } from "./errors";
import { keyset, type Page, type PageRequest } from "./pagination";
import { hashSecret, newSecret } from "./secrets";

export interface NewApiKey {
  name: string;
  scopes: string[];
  expiresAt?: Date;
}

export class ApiKeyRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /** Returns the secret once; only its hash is stored. */
  async create(userId: string, k: NewApiKey): Promise<{ key: ApiKey; secret: string }> {
    const s = newSecret("k");
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

  revoke(userId: string, id: string): Promise<ApiKey> {
    return scoped("api key", id, () =>
      this.prisma.apiKey.update({ where: { id: checkId("api key", id), userId }, data: { revokedAt: new Date() } }),
    );
  }

  /**
   * Authentication: the key (and its user) for a presented secret, if it is
   * neither revoked nor expired and its user is not disabled. Not scoped by a
   * user, by nature: the secret is what identifies the user. Records its use.
   */
  async authenticate(secret: string, now = new Date()): Promise<{ key: ApiKey; user: User } | null> {
    const found = await this.prisma.apiKey.findUnique({ where: { hash: hashSecret(secret) }, include: { user: true } });
    if (!found || found.revokedAt || (found.expiresAt && found.expiresAt <= now) || found.user.disabledAt) return null;
    const { user, ...key } = found;
    await this.prisma.apiKey.update({ where: { id: key.id }, data: { lastUsedAt: now } });
    return { key: { ...key, lastUsedAt: now }, user };
  }
}
