// Users. The only repository not scoped by a user: it is where user ids come from.
import type { PrismaClient, User, UserRole } from "@prisma/client";
import { ConflictError, NotFoundError, checkId, isUniqueViolation, isRecordNotFound } from "./errors";
import { keyset, type Page, type PageRequest } from "./pagination";

export interface NewUser {
  username: string;
  displayName?: string;
  role?: UserRole;
}

export class UserRepository {
  constructor(private readonly prisma: PrismaClient) {}

  async create(u: NewUser): Promise<User> {
    try {
      return await this.prisma.user.create({ data: { username: u.username, displayName: u.displayName, role: u.role } });
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError(`username ${u.username} is taken`);
      throw err;
    }
  }

  async get(userId: string): Promise<User> {
    const u = await this.prisma.user.findUnique({ where: { id: checkId("user", userId) } });
    if (!u) throw new NotFoundError("user", userId);
    return u;
  }

  findByUsername(username: string): Promise<User | null> {
    return this.prisma.user.findUnique({ where: { username } });
  }

  /** Oldest first, so an operator paging through sees the installation's history in order. */
  async list(req?: PageRequest): Promise<Page<User>> {
    const ks = keyset("createdAt", "asc", req);
    return ks.page(await this.prisma.user.findMany({ where: ks.after, orderBy: ks.orderBy, take: ks.take }));
  }

  /**
   * Disables (or re-enables) a user. A disabled user's keys and device tokens
   * stop authenticating at once (their rows are kept, so enabling restores them).
   * Idempotent: disabling a disabled user keeps the first time.
   */
  async setDisabled(userId: string, disabled: boolean): Promise<User> {
    const where = { id: checkId("user", userId) };
    await this.prisma.user.updateMany({
      where: disabled ? { ...where, disabledAt: null } : where,
      data: { disabledAt: disabled ? new Date() : null },
    });
    return this.get(userId);
  }

  /** For identities managed elsewhere (OIDC), whose role the identity provider decides. */
  async setRole(userId: string, role: UserRole): Promise<User> {
    try {
      return await this.prisma.user.update({ where: { id: checkId("user", userId) }, data: { role } });
    } catch (err) {
      if (isRecordNotFound(err)) throw new NotFoundError("user", userId);
      throw err;
    }
  }
}
