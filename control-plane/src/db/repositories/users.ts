// Users. The only repository not scoped by a user: it is where user ids come from.
import type { PrismaClient, User, UserRole } from "@prisma/client";
import { ConflictError, NotFoundError, checkId, isUniqueViolation } from "./errors";

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
}
