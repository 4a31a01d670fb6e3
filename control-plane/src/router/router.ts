// The intent router: is a turn plain chat, a command (a tool call), or a
// question that needs the user's own context? Rules first (cheap,
// predictable, explainable); the model only for what no rule decides, and
// only when enabled; otherwise chat. The decision says who made it, and the
// turn records it on the request.
import type { Config } from "../config/config";
import type { Logger } from "../log";
import { classifyWithModel, type Generate } from "./model";
import { normalize } from "./normalize";
import { BUILTIN_RULES, loadRules, type Route, type Rule } from "./rules";

export interface RouteDecision {
  route: Route;
  source: "rule" | "model" | "default";
  /** The rule's name, "model", or why neither decided. */
  detail: string;
}

export interface RouterOptions {
  /** Checked before the built-in rules (see rules.ts for the file format). */
  extraRules?: Rule[];
  /** Set to let the model route what no rule decides. */
  model?: Generate;
  /** The model's answer must come within this (default 5 s); past it the turn is chat. */
  modelTimeoutMs?: number;
  logger: Logger;
}

export class IntentRouter {
  private readonly rules: readonly Rule[];

  constructor(private readonly opts: RouterOptions) {
    this.rules = [...(opts.extraRules ?? []), ...BUILTIN_RULES];
  }

  /** Whether a decision may need the model (an engine call), i.e. cannot always be made at once by byRules. */
  get usesModel(): boolean {
    return this.opts.model !== undefined;
  }

  /** The rule decision, if a rule matches. */
  byRules(text: string): RouteDecision | undefined {
    const norm = normalize(text);
    const rule = this.rules.find((r) => r.pattern.test(norm));
    return rule && { route: rule.route, source: "rule", detail: rule.name };
  }

  async route(text: string, opts: { requestId?: string; signal?: AbortSignal } = {}): Promise<RouteDecision> {
    const decided = this.byRules(text);
    if (decided) return decided;
    if (!this.opts.model) return { route: "chat", source: "default", detail: "no rule matched" };

    const timeout = AbortSignal.timeout(this.opts.modelTimeoutMs ?? 5000);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    try {
      const route = await classifyWithModel(this.opts.model, text, { requestId: opts.requestId, signal });
      return { route, source: "model", detail: "model" };
    } catch (err) {
      if (opts.signal?.aborted) throw err; // the turn itself was aborted: not a routing problem
      const why = timeout.aborted ? `model took over ${this.opts.modelTimeoutMs ?? 5000} ms` : (err as Error).message;
      this.opts.logger.warn("routing model failed; routing as chat", { error: why, requestId: opts.requestId });
      return { route: "chat", source: "default", detail: `model failed: ${why}` };
    }
  }
}

/** The requests table's spelling of a decision. */
export function decisionRecord(d: RouteDecision) {
  return {
    route: ({ chat: "CHAT", command: "COMMAND", needs_context: "NEEDS_CONTEXT" } as const)[d.route],
    source: ({ rule: "RULE", model: "MODEL", default: "DEFAULT" } as const)[d.source],
    detail: d.detail,
  };
}

/**
 * The router the configuration asks for: extra rules from JOTA_ROUTER_RULES,
 * the model when JOTA_ROUTER_MODEL=on. `generate` is typically
 * `(req, signal) => pool.generate(req, { signal })`.
 */
export function routerFromConfig(config: Pick<Config, "router">, logger: Logger, generate: Generate): IntentRouter {
  return new IntentRouter({
    extraRules: config.router.rulesFile ? loadRules(config.router.rulesFile) : [],
    model: config.router.model ? generate : undefined,
    logger,
  });
}
