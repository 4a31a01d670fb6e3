// OIDC bearer tokens (Keycloak-style deployments): a JWT is accepted when its
// signature verifies against the issuer's JWKS (JOTA_OIDC_JWKS_URL, fetched
// and cached by jose, refetched when an unknown key id appears), its `iss` is
// JOTA_OIDC_ISSUER, its `aud` contains JOTA_OIDC_AUDIENCE, and it is within
// its `nbf`/`exp` (30 s of clock skew allowed). Only asymmetric algorithms:
// a JWKS holds public keys, and an HMAC "key" there would be a shared secret.
//
// Mapping a token to Jota:
// - user: the Jota user named `oidc:<sub>`, created USER on first sight. The
//   subject and not `preferred_username`: the subject is stable and unique
//   per issuer, while a preferred username can be renamed or chosen to look
//   like a local user; the colon keeps the two namespaces apart (local
//   usernames cannot contain one). `preferred_username` (else `name`, else
//   `email`) becomes the display name. A disabled user's tokens are refused.
// - scopes: the token's space-separated `scope` claim, intersected with
//   Jota's scopes (chat, audio, embeddings, memory, admin); others ("openid",
//   "profile"…) are ignored. Give the Jota client scopes of those names in
//   the identity provider.
// - admin: only with the role `jota-admin`, in Keycloak's
//   `realm_access.roles` or in a top-level `roles` array. That role makes the
//   user ADMIN (kept in the user row, so the identity provider stays the
//   authority: losing the role demotes the user at their next request), and
//   only then is an `admin` scope in the token honoured.
// - limits: the credential is the subject (`oidc:<sub>`), so every token of
//   one person shares one rate bucket and one stream cap.
//
// A JWKS that cannot be fetched (down, timeout, not JSON) is a 503: the
// caller's token may be fine, and a 401 would tell them to log in again.
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from "jose";
import { ConfigError, ConflictError, type GatewayConfig, type Logger, type Repositories } from "@jota/control-plane";
import { ApiError } from "../http/errors";
import type { OidcVerifier } from "./authenticator";
import { ALL_SCOPES, type Principal, type Scope } from "./principal";

export const OIDC_ADMIN_ROLE = "jota-admin";
export const OIDC_USERNAME_PREFIX = "oidc:";

const ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"];
const CLOCK_TOLERANCE_S = 30;
const UNAVAILABLE = new Set(["ERR_JWKS_TIMEOUT", "ERR_JOSE_GENERIC", "ERR_JWKS_INVALID"]);

export interface OidcSettings {
  issuer: string;
  audience: string;
  jwksUrl: string;
}

/** Thrown for a token that verifies but cannot be used (no subject, disabled user). */
export class OidcRefused extends Error {
  override name = "OidcRefused";
}

export class JwksOidcVerifier implements OidcVerifier {
  private readonly jwks: ReturnType<typeof createRemoteJWKSet>;

  constructor(
    private readonly settings: OidcSettings,
    private readonly repos: Repositories,
    private readonly log: Logger,
    opts: { timeoutMs?: number } = {},
  ) {
    if (!settings.audience)
      throw new ConfigError("JOTA_OIDC_AUDIENCE", "is required with JOTA_OIDC_ISSUER: without it a token issued to any client of the realm would be accepted");
    this.jwks = createRemoteJWKSet(new URL(settings.jwksUrl), { timeoutDuration: opts.timeoutMs ?? 5000 });
  }

  async verify(token: string): Promise<Principal> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.jwks, {
        issuer: this.settings.issuer,
        audience: this.settings.audience,
        algorithms: ALGORITHMS,
        clockTolerance: CLOCK_TOLERANCE_S,
        requiredClaims: ["sub", "exp"],
      }));
    } catch (err) {
      const code = (err as { code?: string }).code ?? "";
      if (!(err instanceof errors.JOSEError) || UNAVAILABLE.has(code)) {
        this.log.warn("oidc JWKS unavailable", { jwks: this.settings.jwksUrl, error: (err as Error).message });
        throw new ApiError(503, "identity_provider_unavailable", "the identity provider's keys cannot be fetched; try again", {}, { "Retry-After": "5" });
      }
      throw err;
    }
    const sub = payload.sub;
    if (typeof sub !== "string" || sub === "" || sub.length > 255) throw new OidcRefused("the token's subject is missing or too long");

    const admin = roles(payload).includes(OIDC_ADMIN_ROLE);
    const role = admin ? "ADMIN" : "USER";
    const username = OIDC_USERNAME_PREFIX + sub;
    let user = await this.repos.users.findByUsername(username);
    if (!user) {
      try {
        user = await this.repos.users.create({ username, displayName: displayName(payload), role });
        this.log.info("oidc user created", { username, role });
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
        user = await this.repos.users.findByUsername(username); // a concurrent first request created it
        if (!user) throw err;
      }
    }
    if (user.disabledAt) throw new OidcRefused(`user ${username} is disabled`);
    if (user.role !== role) {
      user = await this.repos.users.setRole(user.id, role);
      this.log.info("oidc user's role changed by the identity provider", { username, role });
    }

    const claimed = typeof payload.scope === "string" ? payload.scope.split(/\s+/) : [];
    const scopes = ALL_SCOPES.filter((s: Scope) => claimed.includes(s) && (s !== "admin" || admin));
    return { userId: user.id, username, role, via: "oidc", credentialId: username, scopes };
  }
}

function roles(p: JWTPayload): string[] {
  const out: string[] = [];
  const realm = (p.realm_access as { roles?: unknown } | undefined)?.roles;
  for (const list of [realm, p.roles]) if (Array.isArray(list)) out.push(...list.filter((r): r is string => typeof r === "string"));
  return out;
}

function displayName(p: JWTPayload): string | undefined {
  for (const c of [p.preferred_username, p.name, p.email]) if (typeof c === "string" && c.trim()) return c.trim().slice(0, 200);
  return undefined;
}

/** The verifier of the configured issuer, or undefined when OIDC is off. */
export function oidcFromConfig(cfg: Pick<GatewayConfig, "oidc">, repos: Repositories, log: Logger): JwksOidcVerifier | undefined {
  return cfg.oidc ? new JwksOidcVerifier(cfg.oidc, repos, log.child({ component: "oidc" })) : undefined;
}
