// GET /v1/models, GET /v1/models/{id}: the models Jota's engines serve, as
// their Info calls name them, plus the alias "jota".
//
// The `model` of a request is checked against this list and selects the
// kind of engine, nothing more: Jota's pool is homogeneous (every inference
// engine serves the same chat model), so a chat request naming the chat
// model, or "jota", is the same request. An id no engine serves is a 404
// model_not_found, never a silent fallback. Responses name the model that
// actually served (the engine's), as OpenAI's do.
//
// Engine Info is cached for a few seconds (a request does not cost an Info
// call per engine), and refreshed at once when a request names a model the
// cache does not know, so a model loaded a second ago is found.
import { Router } from "express";
import { z } from "zod";
import type { EnginePool } from "@jota/control-plane";
import { mount, type RouteSpec } from "../api/schemas";
import { OpenAIError } from "./errors";

export type ModelKind = "chat" | "embedding" | "transcription";

export const ALIAS = "jota";

/** What one engine serves. */
interface EngineModels {
  chat?: string;
  embedding?: string;
  transcription?: string;
}

export const ModelObject = z
  .object({
    id: z.string().meta({ description: '"jota" (whatever model of the kind the request needs) or a model an engine serves.' }),
    object: z.literal("model"),
    created: z.number().int().meta({ description: "Unix seconds: the gateway's start (an engine cannot tell when its model file was made)." }),
    owned_by: z.literal("jota"),
  })
  .strict()
  .meta({ id: "OpenAIModel" });
export type ModelObject = z.output<typeof ModelObject>;

export const ModelList = z
  .object({ object: z.literal("list"), data: z.array(ModelObject).meta({ description: '"jota" first, then every model the engines serve now.' }) })
  .strict()
  .meta({ id: "OpenAIModelList" });

export const modelRoutes = {
  list: {
    method: "get",
    path: "/models",
    operationId: "listModels",
    summary: "The models the engines serve, and the alias jota",
    tags: ["openai"],
    auth: "credential",
    responses: { 200: { description: "Every model served now.", schema: ModelList } },
  },
  get: {
    method: "get",
    path: "/models/*id",
    operationId: "getModel",
    summary: "One served model",
    tags: ["openai"],
    auth: "credential",
    params: { id: { description: "A model id as listed; it may hold slashes (org/name), sent as they are." } },
    responses: { 200: { description: "The model.", schema: ModelObject } },
  },
} satisfies Record<string, RouteSpec>;

export class ModelCatalog {
  private byEngine = new Map<string, EngineModels>();
  private at = 0;
  private refreshing: Promise<void> | undefined;
  /** There is no creation time of a model file an engine can report: the gateway's start stands in for it. */
  private readonly created = Math.floor(Date.now() / 1000);

  constructor(
    private readonly pool: EnginePool,
    private readonly ttlMs = 5000,
  ) {}

  /** Every model id served now, "jota" first. */
  async list(): Promise<ModelObject[]> {
    await this.fresh();
    const ids = new Set<string>([ALIAS]);
    for (const m of this.byEngine.values()) for (const id of [m.chat, m.embedding, m.transcription]) if (id) ids.add(id);
    return [...ids].map((id) => this.object(id));
  }

  object(id: string): ModelObject {
    return { id, object: "model", created: this.created, owned_by: "jota" };
  }

  /** Whether `id` names a served model (any kind). */
  async exists(id: string): Promise<boolean> {
    if (id === ALIAS) return true;
    const known = () => [...this.byEngine.values()].some((m) => m.chat === id || m.embedding === id || m.transcription === id);
    await this.fresh();
    if (known()) return true;
    await this.fresh(true);
    return known();
  }

  /**
   * The engines (addresses) that serve `id` as a model of `kind` ("jota":
   * every engine with a model of that kind). 404 model_not_found when none
   * does; the list may be empty for "jota" when no engine of the kind serves.
   */
  async engines(kind: ModelKind, id: string): Promise<string[]> {
    const match = () =>
      [...this.byEngine.entries()].filter(([, m]) => (id === ALIAS ? m[kind] !== undefined : m[kind] === id)).map(([a]) => a);
    await this.fresh();
    let found = match();
    if (found.length === 0) {
      await this.fresh(true);
      found = match();
    }
    if (found.length === 0 && id !== ALIAS) throw OpenAIError.modelNotFound(id);
    return found;
  }

  /** The model of `kind` that the engine at `address` serves (as last seen). */
  nameAt(kind: ModelKind, address: string): string | undefined {
    return this.byEngine.get(address)?.[kind];
  }

  private fresh(force = false): Promise<void> {
    if (!force && Date.now() - this.at < this.ttlMs) return Promise.resolve();
    this.refreshing ??= this.refresh().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async refresh(): Promise<void> {
    const next = new Map<string, EngineModels>();
    // Only engines that serve now: a down one would hold the list for its whole call deadline.
    await Promise.all([
      ...this.pool.inference
        .filter((e) => e.healthy)
        .map(async (e) => {
          const info = await e.client.info().catch(() => undefined);
          if (info) next.set(e.address, { chat: info.chatModel?.name || undefined, embedding: info.embeddingModel?.name || undefined });
        }),
      ...this.pool.transcription
        .filter((e) => e.healthy)
        .map(async (e) => {
          const info = await e.client.info().catch(() => undefined);
          if (info?.ready && info.modelName) next.set(e.address, { transcription: info.modelName });
        }),
    ]);
    this.byEngine = next;
    this.at = Date.now();
  }
}

export function modelsRouter(catalog: ModelCatalog): Router {
  const r = Router();
  mount(r, modelRoutes.list, async (_req, res) => {
    res.json({ object: "list", data: await catalog.list() } satisfies z.output<typeof ModelList>);
  });
  // Model ids may hold slashes ("org/name"), as OpenAI's fine-tune ids hold colons.
  mount(r, modelRoutes.get, async (req, res) => {
    const id = (req.params as unknown as { id: string[] }).id.join("/");
    if (!(await catalog.exists(id))) throw OpenAIError.modelNotFound(id);
    res.json(catalog.object(id));
  });
  return r;
}
