// Who is calling. Every authenticated request carries one Principal; every
// route reads the user id from it (never from the body), so users only ever
// reach their own data.
export type Scope = "chat" | "audio" | "embeddings" | "memory" | "admin";
export const ALL_SCOPES: readonly Scope[] = ["chat", "audio", "embeddings", "memory", "admin"];
/** What a key gets when its creator names no scopes. */
export const DEFAULT_SCOPES: readonly Scope[] = ["chat", "audio", "embeddings", "memory"];

export interface Principal {
  userId: string;
  username: string;
  role: "ADMIN" | "USER";
  /** How the caller proved who it is. */
  via: "api_key" | "device" | "oidc";
  /** The credential's id (API key id, device token id, or the OIDC subject): rate limits and stream limits count per credential. */
  credentialId: string;
  deviceId?: string;
  scopes: readonly Scope[];
}

export function hasScope(p: Principal, scope: Scope): boolean {
  return p.scopes.includes(scope);
}
