// POST /v1/embeddings: vectors from the inference engines' embedding model
// (Embed), L2-normalised as OpenAI's are.
//
// `input` is a string or an array of strings (at most 1024, the engine's
// batch limit; none empty). Token-id arrays are refused: the ids would be of
// a tokenizer the client guessed, not the engine's model. `encoding_format`
// float (numbers) or base64 (little-endian float32, which OpenAI SDKs ask
// for by default and decode). `dimensions` is refused: the model's vectors
// cannot be shortened without changing what they mean.
//
// Which engine: one that serves the named model ("jota": any with an
// embedding model), chosen by load among the healthy ones. No engine with an
// embedding model is a 400 when engines are up (asking again will not help)
// and a 503 when none is (it may come back).
import { status } from "@grpc/grpc-js";
import { Router } from "express";
import { z } from "zod";
import { EngineCallError, type EngineLease, type InferenceEngineClient } from "@jota/control-plane";
import type { GatewayContext } from "../context";
import { mount, type RouteSpec } from "../api/schemas";
import { OpenAIError } from "./errors";
import type { ModelCatalog } from "./models";
import { jsonRequest } from "./validate";

/** The engine's limit per Embed call (service.cpp kMaxEmbedInputs). */
const MAX_INPUTS = 1024;

const embeddingsBody = z
  .object({
    model: z.string().min(1),
    input: z.union([z.string(), z.array(z.unknown())], { error: "must be a string or an array of strings" }),
    encoding_format: z.enum(["float", "base64"]).nullish(),
    dimensions: z.number().int().nullish(),
    user: z.string().nullish(),
  })
  .strict()
  .meta({
    id: "OpenAIEmbeddingRequest",
    description: `input: a string or an array of at most ${MAX_INPUTS} non-empty strings (token arrays are refused); dimensions is refused (the vectors have the model's size).`,
  });

export const EmbeddingList = z
  .object({
    object: z.literal("list"),
    data: z.array(
      z
        .object({
          object: z.literal("embedding"),
          index: z.number().int().meta({ description: "The input's position." }),
          embedding: z
            .union([z.array(z.number()), z.string()])
            .meta({ description: "L2-normalised; with encoding_format base64, the little-endian float32 values in base64." }),
        })
        .strict(),
    ),
    model: z.string().meta({ description: "The embedding model that served." }),
    usage: z.object({ prompt_tokens: z.number().int(), total_tokens: z.number().int() }).strict(),
  })
  .strict()
  .meta({ id: "OpenAIEmbeddingList" });

export const embeddingRoutes = {
  create: {
    method: "post",
    path: "/embeddings",
    operationId: "createEmbeddings",
    summary: "Vectors from the engines' embedding model",
    description: "400 embeddings_unavailable when the engines serve no embedding model; 503 when no engine serves at all.",
    tags: ["openai"],
    auth: "embeddings",
    body: embeddingsBody,
    responses: { 200: { description: "One vector per input, in input order.", schema: EmbeddingList } },
    errors: [404, 500, 503],
  },
} satisfies Record<string, RouteSpec>;

function inputsOf(input: string | unknown[]): string[] {
  const list = typeof input === "string" ? [input] : input;
  const at = (i: number) => (typeof input === "string" ? "input" : `input.${i}`);
  if (list.length === 0) throw OpenAIError.invalid("input", "invalid_value", "input: the array is empty");
  if (list.length > MAX_INPUTS) throw OpenAIError.invalid("input", "invalid_value", `input: at most ${MAX_INPUTS} inputs per request`);
  return list.map((v, i) => {
    if (typeof v === "number" || Array.isArray(v))
      throw OpenAIError.unsupported("input", "token arrays are not supported: send the input as text", "unsupported_value");
    if (typeof v !== "string") throw OpenAIError.invalid(at(i), "invalid_type", `${at(i)}: must be a string`);
    if (v === "") throw OpenAIError.invalid(at(i), "invalid_value", `${at(i)}: cannot be an empty string`);
    return v;
  });
}

function base64(values: number[]): string {
  const buf = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => buf.writeFloatLE(v, i * 4));
  return buf.toString("base64");
}

export function embeddingsRouter(ctx: GatewayContext, catalog: ModelCatalog): Router {
  const r = Router();
  mount(r, embeddingRoutes.create, async (req, res) => {
    const b = jsonRequest(req, embeddingsBody);
    if (b.dimensions != null) throw OpenAIError.unsupported("dimensions", "dimensions is not supported: the model's vectors have a fixed size");
    const inputs = inputsOf(b.input);
    const serving = new Set(await catalog.engines("embedding", b.model));
    if (serving.size === 0) {
      if (ctx.stack.pool.inference.some((e) => e.healthy))
        throw OpenAIError.invalid("model", "embeddings_unavailable", "no engine serves an embedding model: start jota-inference with --embed-model");
      throw new OpenAIError(503, "server_error", "engine_unavailable", "no inference engine is serving now", null, { "Retry-After": "5" });
    }
    const lease: EngineLease<InferenceEngineClient> = ctx.stack.pool.pickInference({
      exclude: ctx.stack.pool.inference.map((e) => e.address).filter((a) => !serving.has(a)),
    });
    let out;
    try {
      out = await lease.client.embed({ inputs, normalize: true, requestId: String(res.locals.requestId ?? "") });
      lease.release();
    } catch (err) {
      lease.release(err);
      throw embedFailure(err, typeof b.input === "string");
    }
    const encode = b.encoding_format === "base64" ? base64 : (v: number[]) => v;
    res.json({
      object: "list",
      data: out.embeddings.map((e, index) => ({ object: "embedding", index, embedding: encode(e.values) })),
      model: out.model || b.model,
      usage: { prompt_tokens: out.totalTokens, total_tokens: out.totalTokens },
    } satisfies z.output<typeof EmbeddingList>);
  });
  return r;
}

/** The engine's refusal of an input (too many tokens for the model) names it: the same input, as `param`. */
function embedFailure(err: unknown, single: boolean): unknown {
  if (!(err instanceof EngineCallError)) return err;
  const detail = err.message.replace(/^.*?: (INVALID_ARGUMENT|FAILED_PRECONDITION): /s, "");
  if (err.code === status.INVALID_ARGUMENT) {
    const i = /inputs\[(\d+)\]/.exec(detail)?.[1];
    const param = i === undefined ? "input" : single ? "input" : `input.${i}`;
    return OpenAIError.invalid(param, "invalid_value", detail.replace(/inputs\[(\d+)\]/g, single ? "input" : "input.$1"));
  }
  if (err.code === status.FAILED_PRECONDITION) return OpenAIError.invalid("model", "embeddings_unavailable", detail);
  if (err.failure === "unavailable") return new OpenAIError(503, "server_error", "engine_unavailable", err.message, null, { "Retry-After": "5" });
  return new OpenAIError(500, "server_error", "engine_error", err.message);
}
