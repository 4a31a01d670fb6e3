// Bearer credentials -> Principal. One place decides what a credential is
// worth, for every interface (REST, WS, /v1, gRPC):
//   - "jota_k_…": an API key (repos.apiKeys.authenticate);
//   - "jota_d_…": an edge device's token (repos.devices.authenticate);
//   - anything else, when OIDC is configured: a JWT verified against the
//     issuer's JWKS (oidc.ts).
// A missing, unknown, revoked or expired credential is the same 401 to the
// caller (nothing tells an attacker which keys exist); the log says which.
import { errors as joseErrors } from "jose";
import type { Logger, Repositories } from "@jota/control-plane";
import { ApiError } from "../http/errors";
import { OIDC_USERNAME_PREFIX } from "./oidc";
import { ALL_SCOPES, type Principal, type Scope } from "./principal";

export interface OidcVerifier {
  verify(token: string): Promise<Principal>;
}

export class Authenticator {
  constructor(
    private readonly repos: Repositories,
    private readonly log: Logger,
    private readonly oidc?: OidcVerifier,
  ) {}

  /** The Principal of an `Authorization` header value (or a bare token); ApiError 401 otherwise. */
  async authenticate(header: string | undefined): Promise<Principal> {
    const token = bearerToken(header);
    if (!token) throw ApiError.unauthorized("missing bearer credentials: send `Authorization: Bearer <API key>`");
    if (token.startsWith("jota_k_")) {
      const found = await this.repos.apiKeys.authenticate(token);
      if (!found) return this.refuse("api key", token);
      return {
        userId: found.user.id,
        username: found.user.username,
        role: found.user.role,
        via: "api_key",
        credentialId: found.key.id,
        scopes: found.key.scopes.filter((s): s is Scope => (ALL_SCOPES as readonly string[]).includes(s) && (s !== "admin" || !oidcManaged(found.user.username))),
      };
    }
    if (token.startsWith("jota_d_")) {
      const found = await this.repos.devices.authenticate(token);
      if (!found) return this.refuse("device token", token);
      // A device talks and listens; it administers nothing.
      return {
        userId: found.user.id,
        username: found.user.username,
        role: found.user.role,
        via: "device",
        credentialId: found.token.id,
        deviceId: found.device.id,
        scopes: ["chat", "audio"],
      };
    }
    if (this.oidc) {
      try {
        return await this.oidc.verify(token);
      } catch (err) {
        if (err instanceof ApiError) throw err; // e.g. 503: the identity provider cannot be reached
        if (!isTokenProblem(err)) throw err; // a database failure is a 500, not the caller's fault
        this.log.info("oidc token refused", { reason: (err as Error).message });
        throw ApiError.unauthorized("invalid, expired or unaccepted bearer token");
      }
    }
    return this.refuse("credential", token);
  }

  private refuse(kind: string, token: string): never {
    this.log.info("credential refused", { kind, prefix: token.slice(0, 19) });
    throw ApiError.unauthorized(`invalid, revoked or expired ${kind}`);
  }
}

/**
 * An OIDC user's role is the identity provider's, re-read from every token
 * (oidc.ts). A stored key cannot follow it (the row is only demoted at the
 * user's next token), so no key of such a user is ever worth `admin`: they
 * administer with their token. Keys created before this rule keep their
 * other scopes.
 */
export function oidcManaged(username: string): boolean {
  return username.startsWith(OIDC_USERNAME_PREFIX);
}

/** jose's verification errors and the verifier's own refusals: the token's fault, a 401. */
function isTokenProblem(err: unknown): boolean {
  return err instanceof joseErrors.JOSEError || (err as Error)?.name === "OidcRefused";
}

/** "Bearer xyz" -> "xyz"; a bare token is accepted too (gRPC metadata, WS subprotocols). */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^\s*Bearer\s+(\S+)\s*$/i.exec(header);
  if (m) return m[1];
  return /^\S+$/.test(header.trim()) ? header.trim() : undefined;
}
