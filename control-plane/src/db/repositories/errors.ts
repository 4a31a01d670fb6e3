// Errors the repositories throw. A row that exists but belongs to another
// user is reported exactly like a row that does not exist: a caller learns
// nothing about other users' data.
import { Prisma } from "@prisma/client";

export class NotFoundError extends Error {
  constructor(
    readonly entity: string,
    readonly id: string,
  ) {
    super(`${entity} ${id} not found`);
    this.name = "NotFoundError";
  }
}

export class InvalidTransitionError extends Error {
  constructor(
    readonly requestId: string,
    readonly from: string,
    readonly to: string,
  ) {
    super(`request ${requestId} is ${from} and cannot become ${to}`);
    this.name = "InvalidTransitionError";
  }
}

export class ConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConflictError";
  }
}

/** Prisma's "record to update not found" (P2025), raised by update/delete on a where that matched nothing. */
export function isRecordNotFound(err: unknown): boolean {
  return err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2025";
}

/**
 * Unique-constraint violation. PostgreSQL through @prisma/adapter-pg reports
 * P2002; pglite-prisma-adapter 0.6.1 reports a generic error carrying the
 * SQLSTATE (23505), so both are recognised.
 */
export function isUniqueViolation(err: unknown): boolean {
  if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2002") return true;
  return /\b23505\b|unique constraint/i.test(err instanceof Error ? err.message : "");
}

/** Runs an update/delete scoped by (id, userId), turning "matched nothing" into NotFoundError. */
export async function scoped<T>(entity: string, id: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (isRecordNotFound(err)) throw new NotFoundError(entity, id);
    throw err;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `id` can name a row (a UUID). */
export function isId(id: unknown): id is string {
  return typeof id === "string" && UUID.test(id);
}

/** An id that is not a UUID names no row: NotFoundError, not a database error. */
export function checkId(entity: string, id: string): string {
  if (!UUID.test(id)) throw new NotFoundError(entity, id);
  return id;
}
