// Per-credential limits: a token bucket of requests (JOTA_RATE_LIMIT per
// minute, JOTA_RATE_BURST at once) and a cap on concurrent streaming turns
// (JOTA_MAX_STREAMS). Counted per credential (API key, device token, OIDC
// subject), in this process.
//
// Buckets are forgotten once they have refilled: a full bucket and no
// bucket are the same to `take`, so the map holds only credentials seen in
// the last burst/rate interval, however many keys come and go.
import type { GatewayConfig } from "@jota/control-plane";
import { ApiError } from "../http/errors";
import type { Principal } from "./principal";

interface Bucket {
  tokens: number;
  at: number;
}

export class Limits {
  private readonly buckets = new Map<string, Bucket>();
  private readonly streams = new Map<string, number>();
  private readonly perMs: number;
  /** How long an untouched bucket takes to refill from empty: after that it can be dropped. */
  private readonly refillMs: number;
  private sweptAt: number;

  constructor(
    private readonly cfg: Pick<GatewayConfig, "rateLimitPerMin" | "rateBurst" | "maxStreamsPerKey">,
    private readonly now: () => number = Date.now,
  ) {
    this.perMs = cfg.rateLimitPerMin / 60_000;
    this.refillMs = this.perMs > 0 ? cfg.rateBurst / this.perMs : Infinity;
    this.sweptAt = now();
  }

  /** Credentials with a bucket in memory (for tests and metrics). */
  get tracked(): number {
    return this.buckets.size;
  }

  /** Takes one request from the credential's bucket; ApiError 429 with Retry-After when it is empty. */
  take(p: Principal): void {
    const t = this.now();
    if (t - this.sweptAt >= Math.min(this.refillMs, 60_000)) this.sweep(t);
    const b = this.buckets.get(p.credentialId) ?? { tokens: this.cfg.rateBurst, at: t };
    b.tokens = Math.min(this.cfg.rateBurst, b.tokens + (t - b.at) * this.perMs);
    b.at = t;
    this.buckets.set(p.credentialId, b);
    if (b.tokens < 1) {
      const waitS = Math.max(1, Math.ceil((1 - b.tokens) / this.perMs / 1000));
      throw new ApiError(
        429,
        "rate_limited",
        `rate limit: ${this.cfg.rateLimitPerMin} requests per minute (burst ${this.cfg.rateBurst}) per credential`,
        { retry_after_s: waitS, limit_per_min: this.cfg.rateLimitPerMin },
        { "Retry-After": String(waitS) },
      );
    }
    b.tokens -= 1;
  }

  /** Drops the buckets that have refilled: at most once per refill interval (or minute), so `take` stays O(1) amortised. */
  private sweep(t: number): void {
    this.sweptAt = t;
    for (const [id, b] of this.buckets) if (t - b.at >= this.refillMs) this.buckets.delete(id);
  }

  /** Reserves a streaming slot for the credential; the returned function gives it back (idempotent). */
  openStream(p: Principal): () => void {
    const n = this.streams.get(p.credentialId) ?? 0;
    if (n >= this.cfg.maxStreamsPerKey)
      throw new ApiError(
        429,
        "too_many_streams",
        `at most ${this.cfg.maxStreamsPerKey} concurrent streams per credential`,
        { limit: this.cfg.maxStreamsPerKey },
        { "Retry-After": "1" },
      );
    this.streams.set(p.credentialId, n + 1);
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      const left = (this.streams.get(p.credentialId) ?? 1) - 1;
      if (left <= 0) this.streams.delete(p.credentialId);
      else this.streams.set(p.credentialId, left);
    };
  }
}
