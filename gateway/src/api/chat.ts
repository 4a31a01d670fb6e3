// POST /api/v1/chat: one turn, answered as a whole (no streaming).
//
// The caller waits at most JOTA_SYNC_LIMIT_MS. A turn that ends before then
// is answered 200 with the stored request and reply (a FAILED one with the
// status its cause deserves and the request id in the error's details).
// Past the limit the request is marked PROCESSING and the answer is 202 with
// its id and where to poll (GET /requests/{id}) or stream
// (GET /requests/{id}/events) the rest; the turn runs on to its end either
// way.
//
// A client that hangs up before its answer is treated like one that waited
// past the limit: the turn runs on and is recorded PROCESSING (nobody is
// waiting for it), because a dropped connection on a phone is no reason to
// throw away the reply. The client finds it again under GET /requests (or in
// the conversation's messages); POST /requests/{id}/abort stops it.
//
// A conversation that already has a turn running answers 409
// conversation_busy at once rather than queueing: a queued REST call could
// wait past the synchronous limit without even having a request id to give.
import { Router } from "express";
import type { TurnOptions, TurnResult } from "@jota/control-plane";
import { z } from "zod";
import type { GatewayContext } from "../context";
import { principal } from "../auth/middleware";
import { ApiError } from "../http/errors";
import { body } from "../http/validate";
import { startTurn } from "../turns";
import { Id, RequestStatus, mount, stopStrings, type RouteSpec } from "./schemas";
import { RequestView, links, loadRequestView } from "./requests";

const ChatOptions = z
  .object({
    max_tokens: z.number().int().min(1).max(32_768).optional().meta({ description: "Most tokens of the reply (default 1024)." }),
    temperature: z.number().min(0).max(2).optional().meta({ description: "0 (default) is greedy decoding." }),
    top_k: z.number().int().min(0).optional(),
    top_p: z.number().min(0).max(1).optional(),
    min_p: z.number().min(0).max(1).optional(),
    repeat_penalty: z.number().min(0).optional(),
    presence_penalty: z.number().min(-2).max(2).optional(),
    frequency_penalty: z.number().min(-2).max(2).optional(),
    seed: z.number().int().min(0).max(0xffff_ffff).optional(),
    stop: stopStrings(8).optional().meta({ description: "Strings that end the reply (not included in it)." }),
    system_prompt: z.string().min(1).max(32_768).optional().meta({ description: "Replaces Jota's default system prompt for this turn." }),
  })
  .strict()
  .meta({ id: "ChatOptions" });

export const ChatBody = z
  .object({
    conversation_id: Id.optional().meta({ description: "An existing conversation of the caller's; omitted: a new one is created." }),
    content: z
      .string()
      .refine((s) => s.trim().length > 0, "must not be empty")
      .meta({ description: "What the user says." }),
    title: z.string().trim().min(1).max(200).optional().meta({ description: "Title of the new conversation (only without conversation_id)." }),
    options: ChatOptions.optional(),
  })
  .strict()
  .superRefine((b, c) => {
    if (b.title !== undefined && b.conversation_id !== undefined)
      c.addIssue({ code: "custom", path: ["title"], message: "only for a new conversation (without conversation_id); rename with PATCH /conversations/{id}" });
  })
  .meta({ id: "ChatRequest" });

export const ChatProcessing = z
  .object({
    request_id: Id,
    conversation_id: Id,
    status: RequestStatus,
    links: z.object({ self: z.string(), events: z.string(), abort: z.string() }),
  })
  .meta({ id: "ChatProcessing", description: "The turn runs on in the background: poll `links.self` or stream `links.events`." });

export const chatRoutes = {
  chat: {
    method: "post",
    path: "/chat",
    operationId: "chat",
    summary: "Say something and get the reply (non-streaming)",
    description:
      "Waits up to the server's synchronous limit (JOTA_SYNC_LIMIT_MS). 200: the finished request with its reply. " +
      "202: the turn runs on in the background (state PROCESSING); poll or stream it with the links. " +
      "A failed turn answers its cause's status (503 no engine, 504 timeout, 502 engine error, 400 invalid request) with `details.request_id`; " +
      "the user's message is stored whatever happens after validation. 409 conversation_busy while the conversation has a turn running.",
    tags: ["chat"],
    auth: "chat",
    body: ChatBody,
    responses: {
      200: { description: "The turn ended (COMPLETED, or ABORTED with the partial reply).", schema: RequestView },
      202: { description: "Still running past the synchronous limit.", schema: ChatProcessing, headers: { Location: "The request's URL (links.self)." } },
    },
    errors: [404, 409, 502, 503, 504],
  },
} satisfies Record<string, RouteSpec>;

function turnOptions(o: z.infer<typeof ChatOptions> | undefined): Omit<TurnOptions, "signal"> {
  if (!o) return {};
  const sampling = {
    temperature: o.temperature,
    topK: o.top_k,
    topP: o.top_p,
    minP: o.min_p,
    repeatPenalty: o.repeat_penalty,
    presencePenalty: o.presence_penalty,
    frequencyPenalty: o.frequency_penalty,
    seed: o.seed,
  };
  const anySampling = Object.values(sampling).some((v) => v !== undefined);
  return { maxTokens: o.max_tokens, stop: o.stop, systemPrompt: o.system_prompt, sampling: anySampling ? sampling : undefined };
}

/** A FAILED turn as the error its cause deserves. */
function failure(r: Extract<TurnResult, { type: "error" }>, conversationId: string): ApiError {
  const details = { request_id: r.requestId, conversation_id: conversationId, error_type: r.errorType };
  switch (r.errorType) {
    case "ENGINE_UNAVAILABLE":
      return new ApiError(503, "engine_unavailable", r.message, details, { "Retry-After": "5" });
    case "TIMEOUT":
      return new ApiError(504, "timeout", r.message, details);
    case "INVALID_REQUEST":
      return new ApiError(400, "invalid_request", r.message, details);
    case "ENGINE_ERROR":
      return new ApiError(502, "engine_error", r.message, details);
    default:
      return new ApiError(500, "internal_error", "the turn failed with an internal error", details);
  }
}

type Waited = { kind: "result"; result: TurnResult } | { kind: "limit" } | { kind: "gone" };

export function chatRouter(ctx: GatewayContext): Router {
  const r = Router();
  mount(r, chatRoutes.chat, async (req, res) => {
    const p = principal(res);
    const b = body(req, ChatBody);
    const { handle, conversationId } = await startTurn(ctx, p, "rest", {
      conversationId: b.conversation_id,
      content: b.content,
      title: b.title,
      traceId: res.locals.requestId as string | undefined,
      options: { ...turnOptions(b.options), ifBusy: "fail" },
    });
    const { requestId } = await handle.accepted;

    let timer: NodeJS.Timeout | undefined;
    let onClose: (() => void) | undefined;
    const waited = await Promise.race<Waited>([
      handle.result.then((result) => ({ kind: "result", result })),
      new Promise<Waited>((resolve) => (timer = setTimeout(() => resolve({ kind: "limit" }), ctx.config.gateway.syncLimitMs))),
      new Promise<Waited>((resolve) => {
        onClose = () => {
          if (!res.writableFinished) resolve({ kind: "gone" });
        };
        res.on("close", onClose);
      }),
    ]).finally(() => {
      clearTimeout(timer);
      if (onClose) res.off("close", onClose);
    });

    if (waited.kind === "gone") {
      await handle.detach();
      return;
    }
    if (waited.kind === "limit") {
      await handle.detach();
      if (!handle.finished) {
        const l = links(requestId);
        res.status(202).location(l.self).json({ request_id: requestId, conversation_id: conversationId, status: "PROCESSING", links: l });
        return;
      }
    }
    const result = waited.kind === "result" ? waited.result : await handle.result;
    if (result.type === "error") throw failure(result, conversationId);
    res.json(await loadRequestView(ctx, p.userId, requestId));
  });
  return r;
}
