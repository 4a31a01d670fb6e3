// Row ids made in this process, for rows whose id must be known before the
// row is written (a turn's request id goes to the engine while the request
// is being stored). UUIDv7 (RFC 9562) like the schema's @default(uuid(7)):
// 48 bits of Unix milliseconds, then randomness, so ids sort by creation time
// within the same index order Prisma's own ids give.
import { randomFillSync } from "node:crypto";

let lastMs = 0;
let seq = 0;

export function uuidv7(now = Date.now()): string {
  const b = randomFillSync(Buffer.alloc(16));
  // Within one millisecond the 12-bit rand_a field counts up (RFC 9562
  // method 1), so ids made in this process keep their order.
  if (now <= lastMs) {
    now = lastMs;
    seq = (seq + 1) & 0xfff;
    if (seq === 0) now = ++lastMs;
  } else {
    lastMs = now;
    seq = b.readUInt16BE(6) & 0x7ff;
  }
  b.writeUIntBE(now, 0, 6);
  b[6] = 0x70 | (seq >> 8);
  b[7] = seq & 0xff;
  b[8] = 0x80 | (b[8]! & 0x3f);
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
