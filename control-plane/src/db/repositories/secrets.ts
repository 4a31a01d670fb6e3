// Bearer secrets (API keys, device tokens): generated here, shown to their
// owner once, stored only as an HMAC-SHA256 under the server secret
// (JOTA_SECRET, or the one generated into the data folder).
//
// Why an HMAC and not a plain hash: the secrets are 256 random bits, so no
// hash of them can be reversed; what the key adds is that a copy of the
// database, or write access to it, is not enough to mint a credential. Whoever
// inserts a row needs the server secret to compute a hash that authenticates.
// A slow hash would buy nothing on 256-bit secrets and cost every request.
//
// The HMAC key is derived from the server secret under a label, so the same
// server secret can key other things later without the two uses meeting.
import { createHmac, randomBytes } from "node:crypto";

export interface NewSecret {
  /** The whole secret, e.g. "jota_k_3fa9c2d1e07b_<43 chars>": returned to the caller once. */
  secret: string;
  /** Public part, stored and shown in lists ("jota_k_3fa9c2d1e07b"). */
  prefix: string;
  hash: string;
}

const LABEL = "jota/v1/credential-hash";

/** Thrown when credentials are created or checked on a database opened without the server secret. */
export class MissingSecretError extends Error {
  constructor() {
    super(
      "API keys and device tokens need the server secret: open the database with DatabaseOptions.secret " +
        "(the gateway and the CLI pass JOTA_SECRET or the one in JOTA_DATA_DIR/secret)",
    );
    this.name = "MissingSecretError";
  }
}

export class SecretHasher {
  private readonly key: Buffer | undefined;

  /**
   * `serverSecret` undefined: a database opened for other work (migrations,
   * turns); creating or checking a credential then fails loudly instead of
   * hashing under a key the server does not use.
   */
  constructor(serverSecret: string | undefined) {
    if (serverSecret !== undefined && serverSecret.length === 0) throw new Error("the server secret is empty");
    this.key = serverSecret === undefined ? undefined : createHmac("sha256", serverSecret).update(LABEL).digest();
  }

  hash(secret: string): string {
    if (!this.key) throw new MissingSecretError();
    return createHmac("sha256", this.key).update(secret).digest("hex");
  }

  /** `kind`: "k" for API keys, "d" for device tokens, so a leaked secret says what it is. */
  issue(kind: "k" | "d"): NewSecret {
    const prefix = `jota_${kind}_${randomBytes(6).toString("hex")}`;
    const secret = `${prefix}_${randomBytes(32).toString("base64url")}`;
    return { secret, prefix, hash: this.hash(secret) };
  }
}
