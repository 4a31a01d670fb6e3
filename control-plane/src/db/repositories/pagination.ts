// Keyset ("cursor") pagination over (timestamp, id): stable while rows are
// added, and served by the (user_id, <timestamp>, id) indexes.

import { isId } from "./errors";

export interface PageRequest {
  /** 1..200; default 50. */
  limit?: number;
  /** nextCursor of the previous page. */
  cursor?: string;
}

export interface Page<T> {
  items: T[];
  /** Absent on the last page. */
  nextCursor: string | undefined;
}

export class InvalidCursorError extends Error {
  constructor() {
    super("invalid page cursor");
    this.name = "InvalidCursorError";
  }
}

export const MAX_PAGE = 200;
const DEFAULT_PAGE = 50;

interface Position {
  at: Date;
  id: string;
}

/** What encode() writes: toISOString() of a year 0000..9999. */
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

// A cursor comes back from the client, which may have forged it: only a
// cursor encode() could have written is accepted, since the database refuses
// an id that is not a UUID (and instants beyond its range) with an error that
// would otherwise surface as a 500.
function decode(cursor: string): Position {
  let v: { at?: unknown; id?: unknown };
  try {
    v = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as { at?: unknown; id?: unknown };
  } catch {
    throw new InvalidCursorError();
  }
  if (typeof v !== "object" || v === null || typeof v.at !== "string" || typeof v.id !== "string") throw new InvalidCursorError();
  if (!isId(v.id) || !ISO_INSTANT.test(v.at)) throw new InvalidCursorError();
  const at = new Date(v.at);
  // The pattern lets 2024-02-30 through, which Date rolls over to March 1st.
  if (Number.isNaN(at.getTime()) || at.toISOString() !== v.at) throw new InvalidCursorError();
  return { at, id: v.id.toLowerCase() };
}

function encode(p: Position): string {
  return Buffer.from(JSON.stringify({ at: p.at.toISOString(), id: p.id })).toString("base64url");
}

/**
 * The `where` fragment, `orderBy` and `take` of one page ordered by `field`
 * then id, in `dir` order; `page()` turns the rows into a Page.
 */
export function keyset<F extends "createdAt" | "lastMessageAt">(field: F, dir: "asc" | "desc", req: PageRequest = {}) {
  const limit = Math.min(Math.max(Math.trunc(req.limit ?? DEFAULT_PAGE), 1), MAX_PAGE);
  const pos = req.cursor === undefined ? undefined : decode(req.cursor);
  type Bound<V> = { gt: V } | { lt: V };
  const past = <V>(v: V): Bound<V> => (dir === "asc" ? { gt: v } : { lt: v });
  const after = pos
    ? { OR: [{ [field]: past(pos.at) }, { [field]: pos.at, id: past(pos.id) }] as Array<{ [K in F]?: Date | Bound<Date> } & { id?: Bound<string> }> }
    : {};
  return {
    after,
    orderBy: [{ [field]: dir }, { id: dir }] as Array<Record<F | "id", "asc" | "desc">>,
    take: limit + 1,
    page<T extends Record<F, Date> & { id: string }>(rows: T[]): Page<T> {
      const items = rows.slice(0, limit);
      const last = items[items.length - 1];
      return { items, nextCursor: rows.length > limit && last ? encode({ at: last[field], id: last.id }) : undefined };
    },
  };
}
