// Bearer secrets (API keys, device tokens): generated here, shown to their
// owner once, stored only as a SHA-256 hash. A fast hash is enough: the
// secrets are 256 random bits, not passwords.
import { createHash, randomBytes } from "node:crypto";

export interface NewSecret {
  /** The whole secret, e.g. "jota_k_3fa9c2d1e07b_<43 chars>": returned to the caller once. */
  secret: string;
  /** Public part, stored and shown in lists ("jota_k_3fa9c2d1e07b"). */
  prefix: string;
  hash: string;
}

export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/** `kind`: "k" for API keys, "d" for device tokens, so a leaked secret says what it is. */
export function newSecret(kind: "k" | "d"): NewSecret {
  const prefix = `jota_${kind}_${randomBytes(6).toString("hex")}`;
  const secret = `${prefix}_${randomBytes(32).toString("base64url")}`;
  return { secret, prefix, hash: hashSecret(secret) };
}
