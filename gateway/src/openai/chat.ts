// POST /v1/chat/completions: OpenAI's chat completion, streamed (SSE) or not,
// run as a Jota chat turn.
//
// Conversations. OpenAI's API is stateless (each request carries the whole
// history); Jota stores every turn in a conversation. So each call is one
// turn of one conversation:
//   - without the header `X-Jota-Conversation`, the call continues the
//     caller's stored conversation whose history is exactly the request's
//     earlier messages, as the chat's previous call left it (its messages
//     and the reply it was sent: continuation.ts), so a chat stays one
//     conversation and keeps its engine session's KV cache. When there is
//     none, a new conversation is made whose history is the request's
//     messages: the earlier user and assistant messages are stored first,
//     then the turn runs with the last message (which must be the user's)
//     as its new message;
//   - with `X-Jota-Conversation: <id>` (a Jota extension), the turn continues
//     that stored conversation of the caller's: only the last user message is
//     new, the request's earlier messages are not stored again (the stored
//     history is the prompt's history). A turn already running in it is a
//     409 conversation_busy (an OpenAI client would otherwise wait unseen).
// System (and "developer") messages are the turn's system prompt, joined in
// order, not stored messages; without one, Jota's default system prompt is
// used. Every response carries `X-Jota-Conversation` and `X-Jota-Request`
// (the stored request), so a client can continue the conversation or look
// the turn up in Jota's own API.
//
// Parameters. temperature, top_p, seed, stop, max_tokens /
// max_completion_tokens, frequency_penalty and presence_penalty go to the
// engine's sampler; omitted ones keep Jota's defaults (the engine's: greedy
// decoding, 1024 tokens at most). response_format json_object / json_schema
// constrain the reply with the engine's JSON-Schema grammar. OpenAI fields
// that cannot change the reply (user, metadata, store, service_tier,
// prompt_cache_key, safety_identifier, reasoning_effort, verbosity,
// prediction, parallel_tool_calls, stream_options without stream) are
// accepted and ignored; ones whose effect Jota cannot deliver are refused
// with unsupported_parameter / unsupported_value rather than ignored: n > 1,
// logprobs, logit_bias, tools / functions (until tool calling exists),
// audio output, web search, non-text content parts.
//
// Streaming. Each engine delta is one `chat.completion.chunk` as it arrives
// (the first chunk carries the role), then a chunk with finish_reason
// ("stop" | "length"), a usage chunk when stream_options.include_usage, and
// `data: [DONE]`. The response's headers wait for the engine's `started`,
// so anything that fails before generation (no engine, a prompt longer than
// the context, a schema the engine refuses) is still a plain HTTP error; a
// failure after that is an SSE `data: {"error": …}` event (OpenAI SDKs
// raise it) and the stream ends without [DONE].
//
// Disconnects. A client that goes away before the response is complete
// (mid-stream, or while waiting for a non-streamed reply) aborts the turn:
// the engine stops decoding and the request is stored ABORTED with its
// partial reply.
import { Router, type Request, type Response } from "express";
import { z } from "zod";
import type { NewMessage } from "@jota/control-plane/db/repositories/messages";
import type { SamplingParams } from "@jota/control-plane/gen/jota/v1/inference";
import { ConversationBusyError, NotFoundError, type TurnDoneEvent, type TurnErrorEvent, type TurnHandle, type TurnOptions } from "@jota/control-plane";
import type { GatewayContext } from "../context";
import { principal } from "../auth/middleware";
import { mount, Source, sourcesView, type RouteSpec } from "../api/schemas";
import { startTurn, titleFrom } from "../turns";
import { OpenAIError, OpenAIErrorBody } from "./errors";
import type { ModelCatalog } from "./models";
import { isUuid, jsonRequest } from "./validate";
import { claimContinuation, recordContinuation, releaseContinuation } from "./continuation";

const nullish = <T extends z.ZodType>(t: T) => t.nullish();
const INT32_MAX = 2 ** 31 - 1;
/** The engine's limits (service.cpp): stop strings of at most 256 bytes, schemas of at most 64 KiB. */
const MAX_STOP_BYTES = 256;
const MAX_SCHEMA_BYTES = 64 << 10;

const part = z.object({ type: z.string() }).loose();
const content = z.union([z.string(), z.array(part)], { error: "must be a string or an array of content parts" });

const message = z
  .object({
    role: z.enum(["system", "developer", "user", "assistant", "tool", "function"]),
    content: nullish(content),
    name: nullish(z.string()),
    refusal: nullish(z.string()),
    tool_calls: nullish(z.array(z.unknown())),
    tool_call_id: nullish(z.string()),
    function_call: nullish(z.unknown()),
    audio: nullish(z.unknown()),
  })
  .strict();

const responseFormat = z.discriminatedUnion(
  "type",
  [
    z.object({ type: z.literal("text") }).strict(),
    z.object({ type: z.literal("json_object") }).strict(),
    z
      .object({
        type: z.literal("json_schema"),
        json_schema: z
          .object({
            name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1 to 64 letters, digits, '_' or '-'"),
            description: nullish(z.string()),
            schema: nullish(z.record(z.string(), z.unknown())),
            strict: nullish(z.boolean()),
          })
          .strict(),
      })
      .strict(),
  ],
  { error: "type must be one of text, json_object, json_schema" },
);

const chatBody = z
  .object({
    model: z.string().min(1),
    messages: z.array(message).min(1, "must hold at least one message"),
    stream: nullish(z.boolean()),
    stream_options: nullish(z.object({ include_usage: nullish(z.boolean()), include_obfuscation: nullish(z.boolean()) }).strict()),
    max_tokens: nullish(z.number().int().min(1).max(INT32_MAX)),
    max_completion_tokens: nullish(z.number().int().min(1).max(INT32_MAX)),
    temperature: nullish(z.number().min(0).max(2)),
    top_p: nullish(z.number().gt(0, "must be greater than 0").max(1)),
    seed: nullish(z.number().int().min(0).max(0xffffffff)),
    stop: nullish(z.union([z.string(), z.array(z.string()).max(4)], { error: "must be a string or an array of at most 4 strings" })),
    frequency_penalty: nullish(z.number().min(-2).max(2)),
    presence_penalty: nullish(z.number().min(-2).max(2)),
    response_format: nullish(responseFormat),
    n: nullish(z.number().int()),
    // Accepted, refused below unless they ask for nothing.
    logprobs: nullish(z.boolean()),
    top_logprobs: nullish(z.number().int()),
    logit_bias: nullish(z.record(z.string(), z.number())),
    tools: nullish(z.array(z.unknown())),
    tool_choice: nullish(z.unknown()),
    functions: nullish(z.array(z.unknown())),
    function_call: nullish(z.unknown()),
    modalities: nullish(z.array(z.string())),
    audio: nullish(z.unknown()),
    web_search_options: nullish(z.unknown()),
    // Accepted and ignored: they cannot change the reply.
    user: nullish(z.string()),
    metadata: nullish(z.record(z.string(), z.string())),
    store: nullish(z.boolean()),
    service_tier: nullish(z.string()),
    prompt_cache_key: nullish(z.string()),
    safety_identifier: nullish(z.string()),
    reasoning_effort: nullish(z.string()),
    verbosity: nullish(z.string()),
    prediction: nullish(z.unknown()),
    parallel_tool_calls: nullish(z.boolean()),
  })
  .strict()
  .meta({
    id: "OpenAIChatCompletionRequest",
    description:
      "OpenAI's chat completion request. n must be 1; logprobs, logit_bias, tools / functions, audio output, web search and non-text content parts are refused (400 unsupported_parameter / unsupported_value); user, metadata, store, service_tier and the like are accepted and ignored; any other field is refused (unknown_parameter).",
  });

// ---- responses --------------------------------------------------------------

const Usage = z
  .object({
    prompt_tokens: z.number().int(),
    completion_tokens: z.number().int(),
    total_tokens: z.number().int(),
    prompt_tokens_details: z.object({ cached_tokens: z.number().int().meta({ description: "Prompt tokens reused from the conversation's KV cache." }) }).strict(),
  })
  .strict()
  .meta({ id: "OpenAICompletionUsage" });

const FinishReason = z.enum(["stop", "length"]);
const completionId = z.string().meta({ description: "chatcmpl-<request id>: the request in Jota's own API (X-Jota-Request)." });
const servedModel = z.string().meta({ description: "The model that served (the engine's), whichever id the request named." });

/** Jota's extension of a completion: what retrieval gave the reply. OpenAI SDKs keep unknown fields. */
const JotaExtension = z
  .object({
    sources: z.array(Source).meta({ description: "Retrieved context the reply was given, best first." }),
    retrieval_error: z.string().optional().meta({ description: "Retrieval was wanted but could not be done: the reply has no context." }),
  })
  .strict()
  .meta({ id: "JotaCompletionExtension", description: "Present when the turn retrieved context (or could not): on the response, or on the stream's finish_reason chunk." });

export const ChatCompletion = z
  .object({
    id: completionId,
    object: z.literal("chat.completion"),
    created: z.number().int(),
    model: servedModel,
    choices: z
      .array(
        z
          .object({
            index: z.number().int(),
            message: z.object({ role: z.literal("assistant"), content: z.string(), refusal: z.null() }).strict(),
            logprobs: z.null(),
            finish_reason: FinishReason,
          })
          .strict(),
      )
      .length(1),
    usage: Usage,
    jota: JotaExtension.optional(),
  })
  .strict()
  .meta({ id: "OpenAIChatCompletion" });

export const ChatCompletionChunk = z
  .object({
    id: completionId,
    object: z.literal("chat.completion.chunk"),
    created: z.number().int(),
    model: servedModel,
    choices: z
      .array(
        z
          .object({
            index: z.number().int(),
            delta: z.object({ role: z.literal("assistant").optional(), content: z.string().optional(), refusal: z.null().optional() }).strict(),
            logprobs: z.null(),
            finish_reason: FinishReason.nullable(),
          })
          .strict(),
      )
      .max(1)
      .meta({ description: "One choice; empty only in the final usage chunk." }),
    usage: Usage.nullable()
      .optional()
      .meta({ description: "Only with stream_options.include_usage: null on every chunk but the last, which has no choices." }),
    jota: JotaExtension.optional(),
  })
  .strict()
  .meta({ id: "OpenAIChatCompletionChunk" });

/** What each SSE `data:` event of a streamed completion holds. */
export const ChatStreamEvent = z.union([ChatCompletionChunk, OpenAIErrorBody]).meta({
  id: "OpenAIChatCompletionStreamEvent",
  description:
    "Each `data:` event of the stream: a chunk per engine delta (the first with the role), one with finish_reason, the usage chunk when stream_options.include_usage, then `data: [DONE]`. A failure after the stream began is one error event, and the stream ends without [DONE].",
});

export const chatRoutes = {
  create: {
    method: "post",
    path: "/chat/completions",
    operationId: "createChatCompletion",
    summary: "A chat completion (streamed or not), run as a Jota chat turn",
    description:
      "Without the header `X-Jota-Conversation`, the turn continues the caller's conversation whose stored history is exactly the request's earlier messages as the previous completed call left them (compared with surrounding whitespace trimmed; each stored history is continued once), and otherwise a new conversation is stored whose history is the request's messages (system and developer messages are the turn's system prompt); the last message must be the user's. " +
      "With `X-Jota-Conversation: <conversation id>` (a Jota extension) the turn continues that stored conversation: only the last user message is new; a turn already running in it is a 409 conversation_busy. " +
      "With `stream: true` the answer is Server-Sent Events; anything that fails before generation starts is still a plain HTTP error. A client that disconnects aborts the turn.",
    tags: ["openai"],
    auth: "chat",
    body: chatBody,
    responses: {
      200: {
        description: "The completion; with stream: true, its chunks as text/event-stream.",
        schema: ChatCompletion,
        alternatives: { "text/event-stream": ChatStreamEvent },
        headers: {
          "X-Jota-Conversation": "The conversation the turn was stored in (send it back to continue it).",
          "X-Jota-Request": "The stored request (GET /api/v1/requests/{id}).",
        },
      },
    },
    errors: [404, 409, 500, 503],
  },
} satisfies Record<string, RouteSpec>;

type ChatBody = z.infer<typeof chatBody>;

/** What a request asks of Jota, once checked. */
interface ChatPlan {
  /** Messages before the new one (stored first in a new conversation). */
  history: NewMessage[];
  content: string;
  options: Omit<TurnOptions, "signal">;
  stream: boolean;
  includeUsage: boolean;
}

function refuseUnsupported(b: ChatBody): void {
  if (b.n != null && b.n !== 1) throw OpenAIError.unsupported("n", "n must be 1: Jota generates one choice per request", "unsupported_value");
  if (b.logprobs) throw OpenAIError.unsupported("logprobs", "logprobs are not supported");
  if (b.top_logprobs) throw OpenAIError.unsupported("top_logprobs", "logprobs are not supported");
  if (b.logit_bias && Object.keys(b.logit_bias).length > 0) throw OpenAIError.unsupported("logit_bias", "logit_bias is not supported");
  if (b.tools?.length) throw OpenAIError.unsupported("tools", "tool calling is not supported yet");
  if (b.functions?.length) throw OpenAIError.unsupported("functions", "function calling is not supported yet");
  for (const [param, v] of [["tool_choice", b.tool_choice], ["function_call", b.function_call]] as const)
    if (v != null && v !== "none" && v !== "auto") throw OpenAIError.unsupported(param, "tool calling is not supported yet", "unsupported_value");
  if (b.modalities && b.modalities.some((m) => m !== "text"))
    throw OpenAIError.unsupported("modalities", "only text output is supported", "unsupported_value");
  if (b.audio != null) throw OpenAIError.unsupported("audio", "audio output is not supported");
  if (b.web_search_options != null) throw OpenAIError.unsupported("web_search_options", "web search is not supported");
}

function textOf(c: z.infer<typeof content>, at: string): string {
  if (typeof c === "string") return c;
  return c
    .map((p, j) => {
      if (p.type !== "text") throw OpenAIError.unsupported(`${at}.${j}.type`, `content parts of type '${p.type}' are not supported: only text`, "unsupported_value");
      const keys = Object.keys(p).filter((k) => k !== "type" && k !== "text");
      if (keys.length) throw OpenAIError.invalid(`${at}.${j}.${keys[0]}`, "unknown_parameter", `Unrecognized request argument supplied: ${at}.${j}.${keys[0]}`);
      if (typeof p.text !== "string") throw OpenAIError.invalid(`${at}.${j}.text`, "invalid_type", `${at}.${j}.text: must be a string`);
      return p.text;
    })
    .join("\n");
}

function plan(b: ChatBody): ChatPlan {
  refuseUnsupported(b);
  const system: string[] = [];
  const said: NewMessage[] = [];
  b.messages.forEach((m, i) => {
    const at = `messages.${i}`;
    if (m.role === "tool" || m.role === "function")
      throw OpenAIError.unsupported(`${at}.role`, `'${m.role}' messages are not supported: tool calling is not supported yet`, "unsupported_value");
    if (m.tool_calls?.length || m.function_call != null) throw OpenAIError.unsupported(`${at}.tool_calls`, "tool calling is not supported yet");
    if (m.content == null) throw OpenAIError.invalid(`${at}.content`, "missing_required_parameter", `Missing required parameter: '${at}.content'`);
    const text = textOf(m.content, `${at}.content`);
    if (m.role === "system" || m.role === "developer") system.push(text);
    else said.push({ role: m.role === "user" ? "USER" : "ASSISTANT", content: text });
  });
  const last = b.messages.length - 1;
  if (b.messages[last]!.role !== "user")
    throw OpenAIError.invalid(`messages.${last}.role`, "invalid_value", "the last message must be the user's: it is the one Jota answers");
  const content = said.pop()!.content;
  if (content.trim() === "") throw OpenAIError.invalid(`messages.${last}.content`, "invalid_value", "the last user message is empty");

  const stop = b.stop == null ? undefined : typeof b.stop === "string" ? [b.stop] : b.stop;
  stop?.forEach((s, i) => {
    const param = typeof b.stop === "string" ? "stop" : `stop.${i}`;
    if (s === "") throw OpenAIError.invalid(param, "invalid_value", `${param}: a stop string cannot be empty`);
    if (Buffer.byteLength(s) > MAX_STOP_BYTES) throw OpenAIError.invalid(param, "invalid_value", `${param}: at most ${MAX_STOP_BYTES} bytes`);
  });

  let jsonSchema: string | undefined;
  const rf = b.response_format;
  if (rf?.type === "json_object") jsonSchema = JSON.stringify({ type: "object" });
  else if (rf?.type === "json_schema") {
    jsonSchema = JSON.stringify(rf.json_schema.schema ?? {});
    if (Buffer.byteLength(jsonSchema) > MAX_SCHEMA_BYTES)
      throw OpenAIError.invalid("response_format.json_schema.schema", "invalid_value", `the schema is larger than ${MAX_SCHEMA_BYTES} bytes`);
  }

  const sampling: SamplingParams = {};
  if (b.temperature != null) sampling.temperature = b.temperature;
  if (b.top_p != null) sampling.topP = b.top_p;
  if (b.seed != null) sampling.seed = b.seed;
  if (b.frequency_penalty != null) sampling.frequencyPenalty = b.frequency_penalty;
  if (b.presence_penalty != null) sampling.presencePenalty = b.presence_penalty;

  const maxTokens = b.max_completion_tokens ?? b.max_tokens ?? undefined;
  return {
    history: said,
    content,
    options: {
      ...(maxTokens !== undefined ? { maxTokens } : {}),
      ...(Object.keys(sampling).length ? { sampling } : {}),
      ...(stop ? { stop } : {}),
      ...(jsonSchema !== undefined ? { jsonSchema } : {}),
      ...(system.length ? { systemPrompt: system.join("\n\n") } : {}),
      ifBusy: "fail",
    },
    stream: b.stream === true,
    includeUsage: b.stream === true && b.stream_options?.include_usage === true,
  };
}

/** A failed turn as the HTTP error OpenAI would give for its cause. */
function turnFailure(e: TurnErrorEvent): OpenAIError {
  const refused = /INVALID_ARGUMENT: (.*)$/s.exec(e.message)?.[1];
  switch (e.errorType) {
    case "INVALID_REQUEST":
      // The engine's own refusals (a schema it cannot compile, …) but its context check, which is the history's length.
      if (refused !== undefined && !/the context holds/.test(refused))
        return OpenAIError.invalid(/json_schema/.test(refused) ? "response_format" : null, "invalid_value", `the engine refused the request: ${refused}`);
      return new OpenAIError(400, "invalid_request_error", "context_length_exceeded", e.message, "messages");
    case "ENGINE_UNAVAILABLE":
      if (/RESOURCE_EXHAUSTED/.test(e.message)) return new OpenAIError(503, "server_error", "engine_overloaded", e.message, null, { "Retry-After": "1" });
      return new OpenAIError(503, "server_error", "engine_unavailable", e.message, null, { "Retry-After": "5" });
    case "TIMEOUT":
      return new OpenAIError(503, "server_error", "timeout", e.message);
    case "ENGINE_ERROR":
      return new OpenAIError(500, "server_error", "engine_error", e.message);
    default:
      return new OpenAIError(500, "server_error", "internal_error", `internal error (request ${e.requestId})`);
  }
}

/** The same answer for a malformed id, an unknown one and another user's. */
function conversationNotFound(id: string): OpenAIError {
  return new OpenAIError(404, "invalid_request_error", "conversation_not_found", `conversation ${id} not found`, "X-Jota-Conversation");
}

function abortedError(requestId: string): OpenAIError {
  return new OpenAIError(503, "server_error", "request_aborted", `the generation was aborted before it finished (request ${requestId}); its partial reply is stored`);
}

function usageOf(d: TurnDoneEvent): z.output<typeof Usage> {
  const { promptTokens, completionTokens, cachedTokens } = d.usage;
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: cachedTokens },
  };
}

/** OpenAI knows only these; a COMPLETED turn ends on one of them. */
const finishReason = (r: string): z.output<typeof FinishReason> => (r === "length" ? "length" : "stop");

/** The extension, when the turn retrieved (or tried to). */
function jotaOf(ev: TurnDoneEvent): z.output<typeof JotaExtension> | undefined {
  if (ev.sources.length === 0 && !ev.retrievalError) return undefined;
  return { sources: sourcesView(ev.sources), ...(ev.retrievalError ? { retrieval_error: ev.retrievalError } : {}) };
}

/** Waits until the clock is past millisecond `t`, so messages stored one after another never share a timestamp (history is ordered by it). */
async function afterMillisecond(t: number): Promise<void> {
  while (Date.now() <= t) await new Promise((r) => setTimeout(r, 1));
}

export function chatRouter(ctx: GatewayContext, catalog: ModelCatalog): Router {
  const r = Router();
  mount(r, chatRoutes.create, async (req: Request, res: Response) => {
    // Registered before any await, so a client gone during the set-up is seen too.
    const gone = new AbortController();
    let handle: TurnHandle | undefined;
    res.on("close", () => {
      if (res.writableFinished) return;
      gone.abort();
      handle?.abort("the client disconnected");
    });

    const b = jsonRequest(req, chatBody);
    const p = plan(b);
    const header = req.get("x-jota-conversation")?.trim() || undefined;
    if (header !== undefined && !isUuid(header)) throw conversationNotFound(header);
    const engines = await catalog.engines("chat", b.model);
    if (engines.length === 0) throw new OpenAIError(503, "server_error", "engine_unavailable", "no engine serves a chat model now", null, { "Retry-After": "5" });

    const user = principal(res);
    const begin = async (conversationId: string) => ({
      handle: (await startTurn(ctx, user, "openai", { conversationId, content: p.content, traceId: res.locals.requestId, options: p.options })).handle,
      conversationId,
    });
    let created: string | undefined;
    const started = async (): Promise<{ handle: TurnHandle; conversationId: string }> => {
      if (header)
        // startTurn's NotFoundError would be the generic not_found: the header is what named it.
        return begin(header.toLowerCase()).catch((err: unknown) => {
          throw err instanceof NotFoundError && err.entity === "conversation" ? conversationNotFound(header) : err;
        });
      const continued = await claimContinuation(ctx.repos, user.userId, p.history);
      if (continued) {
        try {
          return await begin(continued.conversationId);
        } catch (err) {
          // Busy: a turn from another interface is adding to that history now, so this call gets a conversation of its own.
          if (!(err instanceof ConversationBusyError)) {
            await releaseContinuation(ctx.repos, user.userId, continued).catch(() => {});
            throw err;
          }
        }
      }
      const conv = await ctx.repos.conversations.create(user.userId, { title: titleFrom(p.history[0]?.content ?? p.content) });
      created = conv.id;
      let last = 0;
      for (const m of p.history) {
        await afterMillisecond(last);
        last = (await ctx.repos.messages.append(user.userId, conv.id, m)).createdAt.getTime();
      }
      await afterMillisecond(last);
      return begin(conv.id);
    };
    let conversationId: string;
    try {
      ({ handle, conversationId } = await started());
    } catch (err) {
      // A turn that never began leaves nothing behind: the conversation made for it goes with its history.
      if (created) await ctx.repos.conversations.delete(user.userId, created).catch(() => {});
      if ((err as { status?: number }).status === 429) ctx.metrics.rateLimited.inc({ interface: "openai" });
      throw err;
    }
    const { requestId } = await handle.accepted;
    res.set({ "X-Jota-Conversation": conversationId, "X-Jota-Request": requestId });
    if (gone.signal.aborted) handle.abort("the client disconnected");

    const id = `chatcmpl-${requestId}`;
    const createdAt = Math.floor(Date.now() / 1000);
    let model = b.model;
    const sse = p.stream ? new ChunkWriter(res, { id, created: createdAt, includeUsage: p.includeUsage }) : undefined;

    for await (const ev of handle.events(gone.signal)) {
      if (gone.signal.aborted) return;
      if (ev.type === "started") {
        model = catalog.nameAt("chat", ev.engine) ?? b.model;
        if (sse) await sse.open(model);
      } else if (ev.type === "delta") {
        if (sse && !sse.opened) await sse.open(model);
        if (sse && ev.text) await sse.delta(ev.text);
      } else if (ev.type === "done") {
        if (ev.status === "ABORTED") {
          const e = abortedError(requestId);
          if (sse?.opened) return sse.fail(e);
          throw e;
        }
        // Before the reply is out: the chat's next call may come at once.
        if (!header && ev.status === "COMPLETED" && ev.text !== "")
          await recordContinuation(ctx.repos, user.userId, conversationId, [...p.history, { role: "USER", content: p.content }, { role: "ASSISTANT", content: ev.text }]).catch((err: unknown) =>
            ctx.log.warn("could not record the conversation's history digest", { conversationId, error: (err as Error)?.message ?? String(err) }),
          );
        if (sse) {
          await sse.open(model);
          return sse.finish(finishReason(ev.finishReason), usageOf(ev), jotaOf(ev));
        }
        res.json({
          id,
          object: "chat.completion",
          created: createdAt,
          model,
          choices: [{ index: 0, message: { role: "assistant", content: ev.text, refusal: null }, logprobs: null, finish_reason: finishReason(ev.finishReason) }],
          usage: usageOf(ev),
          ...(jotaOf(ev) ? { jota: jotaOf(ev) } : {}),
        } satisfies z.output<typeof ChatCompletion>);
        return;
      } else if (ev.type === "error") {
        const e = turnFailure(ev);
        if (sse?.opened) return sse.fail(e);
        throw e;
      }
    }
  });
  return r;
}

/** The SSE side of a streamed completion: chunks written as they come, waiting for the socket when it is full. */
class ChunkWriter {
  opened = false;
  private model = "";

  constructor(
    private readonly res: Response,
    private readonly c: { id: string; created: number; includeUsage: boolean },
  ) {}

  async open(model: string): Promise<void> {
    if (this.opened) return;
    this.model = model;
    this.res.status(200).set({
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache",
      Connection: "keep-alive",
      // Reverse proxies (nginx) would otherwise buffer the stream.
      "X-Accel-Buffering": "no",
    });
    this.res.flushHeaders();
    this.opened = true;
    await this.chunk({ role: "assistant", content: "", refusal: null }, null);
  }

  delta(text: string): Promise<void> {
    return this.chunk({ content: text }, null);
  }

  async finish(reason: z.output<typeof FinishReason>, usage: z.output<typeof Usage>, jota?: z.output<typeof JotaExtension>): Promise<void> {
    await this.chunk({}, reason, jota);
    if (this.c.includeUsage)
      await this.send({ id: this.c.id, object: "chat.completion.chunk", created: this.c.created, model: this.model, choices: [], usage });
    this.res.end("data: [DONE]\n\n");
  }

  /** A failure after the stream began: an error event (OpenAI SDKs raise it), and no [DONE]. */
  fail(e: OpenAIError): void {
    this.res.end(`data: ${JSON.stringify(e.body())}\n\n`);
  }

  private chunk(
    delta: z.output<typeof ChatCompletionChunk>["choices"][number]["delta"],
    finish: z.output<typeof FinishReason> | null,
    jota?: z.output<typeof JotaExtension>,
  ): Promise<void> {
    return this.send({
      id: this.c.id,
      object: "chat.completion.chunk",
      created: this.c.created,
      model: this.model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      ...(this.c.includeUsage ? { usage: null } : {}),
      ...(jota ? { jota } : {}),
    });
  }

  private async send(obj: z.output<typeof ChatCompletionChunk>): Promise<void> {
    if (this.res.write(`data: ${JSON.stringify(obj)}\n\n`)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.res.off("drain", done);
        this.res.off("close", done);
        resolve();
      };
      this.res.on("drain", done);
      this.res.on("close", done);
    });
  }
}
