// Edge devices (e.g. microphone satellites) and their tokens.
import type { Device, DeviceToken, PrismaClient, User } from "@prisma/client";
import { ConflictError, NotFoundError, checkId, isUniqueViolation } from "./errors";
import { keyset, type Page, type PageRequest } from "./pagination";
import type { SecretHasher } from "./secrets";

export interface NewDevice {
  name: string;
  kind?: string;
}

export class DeviceRepository {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly hasher: SecretHasher,
  ) {}

  async create(userId: string, d: NewDevice): Promise<Device> {
    try {
      return await this.prisma.device.create({ data: { userId, name: d.name, kind: d.kind } });
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError(`a device named ${d.name} exists`);
      throw err;
    }
  }

  async get(userId: string, id: string): Promise<Device> {
    const d = await this.prisma.device.findFirst({ where: { id: checkId("device", id), userId } });
    if (!d) throw new NotFoundError("device", id);
    return d;
  }

  /** Newest first. */
  async list(userId: string, req?: PageRequest): Promise<Page<Device>> {
    const ks = keyset("createdAt", "desc", req);
    return ks.page(await this.prisma.device.findMany({ where: { userId, ...ks.after }, orderBy: ks.orderBy, take: ks.take }));
  }

  /** Revokes the device and every token it has. Idempotent: a revoked device keeps its first revocation time. */
  async revoke(userId: string, id: string): Promise<Device> {
    checkId("device", id);
    const now = new Date();
    await this.prisma.$transaction([
      this.prisma.device.updateMany({ where: { id, userId, revokedAt: null }, data: { revokedAt: now } }),
      this.prisma.deviceToken.updateMany({ where: { deviceId: id, userId, revokedAt: null }, data: { revokedAt: now } }),
    ]);
    return this.get(userId, id);
  }

  /** A new token for a device that is not revoked; the secret is returned once, only its HMAC is stored. */
  async issueToken(userId: string, deviceId: string, expiresAt?: Date): Promise<{ token: DeviceToken; secret: string }> {
    const device = await this.get(userId, deviceId);
    if (device.revokedAt) throw new ConflictError(`device ${deviceId} is revoked`);
    const s = this.hasher.issue("d");
    const token = await this.prisma.deviceToken.create({
      data: { userId, deviceId, prefix: s.prefix, hash: s.hash, expiresAt },
    });
    return { token, secret: s.secret };
  }

  /** The device's tokens, newest first (rotation keeps a few alive at once). */
  listTokens(userId: string, deviceId: string): Promise<DeviceToken[]> {
    return this.prisma.deviceToken.findMany({
      where: { deviceId: checkId("device", deviceId), userId },
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    });
  }

  /** Idempotent, like revoke. */
  async revokeToken(userId: string, tokenId: string): Promise<DeviceToken> {
    const where = { id: checkId("device token", tokenId), userId };
    await this.prisma.deviceToken.updateMany({ where: { ...where, revokedAt: null }, data: { revokedAt: new Date() } });
    const token = await this.prisma.deviceToken.findFirst({ where });
    if (!token) throw new NotFoundError("device token", tokenId);
    return token;
  }

  /**
   * Authentication of a device: its token's device and user, if neither the
   * token nor the device is revoked or expired and the user is not disabled.
   * Not scoped by a user, by nature: the token is what identifies the user.
   * Records when the device was last seen.
   */
  async authenticate(secret: string, now = new Date()): Promise<{ device: Device; token: DeviceToken; user: User } | null> {
    const found = await this.prisma.deviceToken.findUnique({
      where: { hash: this.hasher.hash(secret) },
      include: { device: true, user: true },
    });
    if (!found || found.revokedAt || (found.expiresAt && found.expiresAt <= now)) return null;
    const { device, user, ...token } = found;
    if (device.revokedAt || user.disabledAt) return null;
    await this.prisma.$transaction([
      this.prisma.deviceToken.update({ where: { id: token.id }, data: { lastUsedAt: now } }),
      this.prisma.device.update({ where: { id: device.id }, data: { lastSeenAt: now } }),
    ]);
    return { device: { ...device, lastSeenAt: now }, token: { ...token, lastUsedAt: now }, user };
  }
}
