// The chat turn, from "user X said Y in conversation Z" to a stored reply.
//
// Order of work (each step is recorded before the next one starts):
//   0. the conversation's lock: one turn at a time per conversation (locks.ts);
//   1. beginTurn: the request (PENDING) and the user's message, in one
//      transaction: whatever fails later, what the user said is kept;
//   2. route: the intent router's decision and its source, on the request;
//   3. engine: the conversation's own engine (it holds the KV cache) or,
//      when that one is gone, another (stored as the new affinity);
//   4. prompt: system prompt, retrieved context (a later issue fills it),
//      summary, and the newest history that fits the engine's context,
//      measured with the engine's CountTokens (prompt.ts);
//   5. STREAMING (or PROCESSING, when the caller has stopped waiting and
//      the turn runs on in the background: runner.ts), then Generate with the conversation's engine session id
//      (so the engine reuses its KV cache), each event forwarded as it comes;
//   6. endTurn: the final state (COMPLETED, FAILED with its cause, ABORTED
//      with the partial reply) with usage and timings, and the reply.
//
// The turn is an async generator of TurnEvents: nothing is buffered, each
// engine delta is yielded as it arrives. Aborting `signal` (a client
// disconnect) cancels the gRPC call, so the engine stops decoding; a
// consumer that stops iterating does the same. Either way the turn is
// recorded ABORTED with what was generated so far.
//
// Engine failures: an engine that fails before anything was streamed is
// replaced by another one (the turn goes on there); one that fails
// mid-stream ends the turn FAILED with the cause, and its lease is released
// with the error, so the pool marks it down at once and the next turn goes
// to a healthy engine.
import { performance } from "node:perf_hooks";
import type { Conversation, Request, RequestErrorType } from "@prisma/client";
import type { Repositories, TurnOutcome } from "../db/repositories";
import { EngineCallError, type InferenceEngineClient } from "../engines/clients";
import { EngineUnavailableError, type EngineLease, type EnginePool } from "../engines/pool";
import { FinishReason, type GenerateDone, GenerateRequest, type GenerateStarted, type SamplingParams } from "../gen/jota/v1/inference";
import type { Logger } from "../log";
import { decisionRecord, type IntentRouter, type RouteDecision } from "../router/router";
import { engineForConversation } from "./affinity";
import { ConversationLocks } from "./locks";
import { buildPrompt, DEFAULT_SYSTEM_PROMPT, PromptTooLongError, type BuiltPrompt } from "./prompt";
import { InvalidTransitionError } from "../db/repositories";

export interface TurnDeps {
  repos: Repositories;
  pool: EnginePool;
  /** Without one every turn is chat (source "default"). */
  router?: IntentRouter;
  logger: Logger;
  /** One turn at a time per conversation; without it turns are not serialised. */
  locks?: ConversationLocks;
}

export interface TurnInput {
  userId: string;
  conversationId: string;
  content: string;
  traceId?: string;
}

export interface TurnOptions {
  /** Aborting ends the turn ABORTED (partial reply kept) and cancels the engine's generation. */
  signal?: AbortSignal;
  systemPrompt?: string;
  /** Most tokens of the reply (default 1024); the engine also stops when its context is full. */
  maxTokens?: number;
  /** Context tokens kept free for the reply when trimming the history: min(maxTokens, context / 2) by default. */
  replyReserveTokens?: number;
  sampling?: SamplingParams;
  stop?: string[];
  /** Constrains the reply to this JSON Schema (the engine turns it into a grammar); an invalid one fails the turn with the engine's INVALID_ARGUMENT. */
  jsonSchema?: string;
  /** Stored messages considered for the history window (default 200). */
  historyLimit?: number;
  /** Overall deadline of the Generate stream (none by default). */
  deadlineMs?: number;
  /** When the conversation has a turn running: wait for it (default) or fail at once with ConversationBusyError. */
  ifBusy?: "wait" | "fail";
}

export interface TurnUsage {
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
}

export interface TurnTimings {
  /** From the request being recorded to the first streamed token (undefined without one). */
  ttftMs: number | undefined;
  totalMs: number;
  queueMs: number | undefined;
  prefillMs: number | undefined;
  decodeMs: number | undefined;
}

/** The request and the user's message are stored: the turn has an id. */
export interface TurnAcceptedEvent {
  type: "accepted";
  requestId: string;
  conversationId: string;
  userMessageId: string;
}

/** The engine took the turn: what it was given and what it already had. */
export interface TurnStartedEvent {
  type: "started";
  requestId: string;
  conversationId: string;
  userMessageId: string;
  engine: string;
  route: RouteDecision;
  promptTokens: number;
  /** Prompt tokens reused from the conversation's KV cache on the engine. */
  cachedTokens: number;
  queueMs: number;
  /** Stored messages in the prompt, and older ones left out so it fits the context. */
  historyMessages: number;
  trimmedMessages: number;
}

export interface TurnDeltaEvent {
  type: "delta";
  text: string;
  /** Index of the delta's first token in the reply. */
  index: number;
}

/** Reserved for tool calls (a later issue); not emitted yet. */
export interface TurnToolEvent {
  type: "tool";
  toolCallId: string;
  name: string;
  state: "started" | "finished" | "failed";
}

export interface TurnDoneEvent {
  type: "done";
  requestId: string;
  status: "COMPLETED" | "ABORTED";
  /** stop | length | cancelled */
  finishReason: string;
  /** The whole reply (the concatenation of the deltas), as stored. */
  text: string;
  replyMessageId: string | undefined;
  usage: TurnUsage;
  timings: TurnTimings;
}

export interface TurnErrorEvent {
  type: "error";
  requestId: string;
  status: "FAILED";
  errorType: RequestErrorType;
  message: string;
  /** The user's message, stored whatever failed. */
  userMessageId: string;
}

export type TurnEvent = TurnAcceptedEvent | TurnStartedEvent | TurnDeltaEvent | TurnToolEvent | TurnDoneEvent | TurnErrorEvent;

/** Why a turn failed, as stored on its request. */
class TurnFailure extends Error {
  constructor(
    readonly errorType: RequestErrorType,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "TurnFailure";
  }
}

const FINISH: Record<FinishReason, string> = {
  [FinishReason.FINISH_REASON_UNSPECIFIED]: "unspecified",
  [FinishReason.FINISH_REASON_STOP]: "stop",
  [FinishReason.FINISH_REASON_LENGTH]: "length",
  [FinishReason.FINISH_REASON_CANCELLED]: "cancelled",
  [FinishReason.FINISH_REASON_ERROR]: "error",
  [FinishReason.UNRECOGNIZED]: "unrecognized",
};

/**
 * Runs one chat turn. Throws (before anything is stored) only when the
 * conversation is not the user's (NotFoundError), or is busy and `ifBusy` is
 * "fail" (ConversationBusyError), or the signal aborted the wait for it;
 * after that every outcome is recorded on the request and reported as the
 * last event (done or error).
 */
export async function* turn(deps: TurnDeps, input: TurnInput, opts: TurnOptions = {}): AsyncGenerator<TurnEvent, void, undefined> {
  const conversation = await deps.repos.conversations.get(input.userId, input.conversationId);
  const release = await deps.locks?.acquire(conversation.id, { wait: opts.ifBusy !== "fail", signal: opts.signal });
  try {
    yield* lockedTurn(deps, input, opts, conversation);
  } finally {
    release?.();
  }
}

async function* lockedTurn(
  deps: TurnDeps,
  input: TurnInput,
  opts: TurnOptions,
  conversation: Conversation,
): AsyncGenerator<TurnEvent, void, undefined> {
  const { repos, pool } = deps;
  const { userId } = input;

  // 1. Nothing the user said is lost, whatever happens next.
  const { request, message } = await repos.requests.beginTurn(userId, conversation.id, { content: input.content, traceId: input.traceId });
  const t0 = performance.now();
  const log = deps.logger.child({ component: "turn", requestId: request.id, conversationId: conversation.id });

  const ac = new AbortController();
  const onAbort = () => ac.abort(opts.signal?.reason);
  if (opts.signal?.aborted) ac.abort(opts.signal.reason);
  else opts.signal?.addEventListener("abort", onAbort, { once: true });

  const s = {
    text: "",
    completionTokens: 0,
    engine: undefined as string | undefined,
    started: undefined as GenerateStarted | undefined,
    done: undefined as GenerateDone | undefined,
    ttftMs: undefined as number | undefined,
    streaming: undefined as Promise<Request> | undefined,
  };
  let lease: EngineLease<InferenceEngineClient> | undefined;
  let outcome: TurnOutcome | undefined;

  const usage = (): TurnUsage => ({
    promptTokens: s.done?.usage?.promptTokens ?? s.started?.promptTokens ?? 0,
    cachedTokens: s.done?.usage?.cachedTokens ?? s.started?.cachedTokens ?? 0,
    completionTokens: s.done?.usage?.completionTokens ?? s.completionTokens,
  });
  const timings = (): TurnTimings => ({
    ttftMs: s.ttftMs,
    totalMs: performance.now() - t0,
    queueMs: s.done?.timings?.queueMs ?? s.started?.queueMs,
    prefillMs: s.done?.timings?.prefillMs,
    decodeMs: s.done?.timings?.decodeMs,
  });
  const details = () => {
    const u = usage();
    const t = timings();
    return {
      engine: s.engine,
      promptTokens: s.started || s.done ? u.promptTokens : undefined,
      cachedTokens: s.started || s.done ? u.cachedTokens : undefined,
      completionTokens: u.completionTokens,
      ...t,
    };
  };
  const aborted = (why: string): TurnOutcome => ({
    status: "ABORTED",
    reply: { content: s.text },
    finishReason: "cancelled",
    error: why,
    ...details(),
  });

  try {
    try {
      yield { type: "accepted", requestId: request.id, conversationId: conversation.id, userMessageId: message.id };
      // 2. Route.
      const decision: RouteDecision = deps.router
        ? await deps.router.route(input.content, { requestId: request.id, signal: ac.signal })
        : { route: "chat", source: "default", detail: "no router" };
      await repos.requests.setRoute(userId, request.id, decisionRecord(decision));
      // command and needs_context are answered as chat until tools and retrieval exist (later issues).

      // 3-5. Engine, prompt, stream; a failure before anything was streamed tries another engine.
      const exclude = new Set<string>();
      let yielded = false;
      for (;;) {
        checkAborted(ac.signal);
        lease = await engineForConversation(pool, repos.conversations, conversation, exclude);
        const address = lease.address;
        s.engine = address;
        try {
          const prompt = await promptFor(lease, opts);
          checkAborted(ac.signal);
          const req = GenerateRequest.fromPartial({
            input: { $case: "messages", value: { items: prompt.messages } },
            sessionId: conversation.engineSessionId,
            sampling: opts.sampling,
            maxTokens: opts.maxTokens ?? 1024,
            stop: opts.stop ?? [],
            constraint: opts.jsonSchema !== undefined ? { $case: "jsonSchema", value: opts.jsonSchema } : undefined,
            requestId: request.id,
          });
          // STREAMING is written while the engine already prefills; it is on the request before any event goes out.
          const recorded: Promise<unknown> = s.streaming
            ? s.streaming.then(() => repos.requests.record(userId, request.id, { engine: address })) // another engine took over
            : (s.streaming = startStreaming(repos, userId, request.id, { engine: address, startedAt: new Date() }));
          recorded.catch(() => {}); // awaited below; a rejection before then is not "unhandled"
          for await (const ev of lease.client.generate(req, { signal: ac.signal, deadlineMs: opts.deadlineMs })) {
            const e = ev.event;
            if (!e) continue;
            if (e.$case === "started") {
              await recorded;
              s.started = e.value;
              yielded = true;
              yield {
                type: "started",
                requestId: request.id,
                conversationId: conversation.id,
                userMessageId: message.id,
                engine: address,
                route: decision,
                promptTokens: e.value.promptTokens,
                cachedTokens: e.value.cachedTokens,
                queueMs: e.value.queueMs,
                historyMessages: prompt.historyMessages,
                trimmedMessages: prompt.trimmedMessages,
              };
            } else if (e.$case === "delta") {
              if (!yielded) await recorded; // an engine that sends no `started`: the state is still recorded first
              yielded = true;
              s.ttftMs ??= performance.now() - t0;
              s.text += e.value.text;
              s.completionTokens += e.value.tokenIds.length;
              yield { type: "delta", text: e.value.text, index: e.value.index };
            } else if (e.$case === "done") {
              s.done = e.value;
            }
          }
          lease.release();
          lease = undefined;
          break;
        } catch (err) {
          const held = lease;
          lease = undefined;
          held?.release(err); // an engine that went away is marked down now
          if (ac.signal.aborted) throw err;
          const e = err instanceof EngineCallError ? err : undefined;
          if (!yielded && e?.failure === "unavailable" && exclude.size + 1 < pool.inference.length) {
            exclude.add(address);
            log.warn("engine failed before streaming; trying another", { engine: address, error: e.message });
            continue;
          }
          throw classify(err, address, s.completionTokens, yielded);
        }
      }

      // 6. The final state.
      const done = s.done;
      if (!done) throw new TurnFailure("ENGINE_ERROR", `engine ${s.engine} ended the stream without a result`);
      const finishReason = FINISH[done.finishReason] ?? String(done.finishReason);
      if (done.finishReason === FinishReason.FINISH_REASON_ERROR)
        throw new TurnFailure("ENGINE_ERROR", `engine ${s.engine} failed the generation: ${done.error || "no detail"}`);
      if (done.finishReason === FinishReason.FINISH_REASON_CANCELLED) outcome = aborted("cancelled by the engine");
      else outcome = { status: "COMPLETED", reply: { content: s.text }, finishReason, ...details() };
    } catch (err) {
      if (ac.signal.aborted) outcome = aborted("aborted by the caller");
      else {
        const f = err instanceof TurnFailure ? err : classify(err, s.engine, s.completionTokens, false);
        if (f.errorType === "INTERNAL") log.error("turn failed", { error: (err as Error)?.stack ?? String(err) });
        else log.warn("turn failed", { errorType: f.errorType, error: f.message });
        // A failed turn's partial text is not stored: the next turn's history should not carry half an answer.
        outcome = { status: "FAILED", errorType: f.errorType, error: f.message, finishReason: s.done ? FINISH[s.done.finishReason] : "error", ...details() };
      }
    }

    const stored = await finish(outcome);
    if (outcome.status === "FAILED")
      yield { type: "error", requestId: request.id, status: "FAILED", errorType: outcome.errorType!, message: outcome.error!, userMessageId: message.id };
    else
      yield {
        type: "done",
        requestId: request.id,
        status: outcome.status,
        finishReason: outcome.finishReason as string,
        text: s.text,
        replyMessageId: stored?.reply?.id,
        usage: usage(),
        timings: timings(),
      };
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    if (!outcome) {
      // The consumer stopped iterating (return() at a yield): the engine call is already cancelled by then.
      ac.abort();
      lease?.release(new EngineCallError(lease.address, "Generate", 1, "cancelled", "the caller stopped reading"));
      outcome = aborted("the caller stopped reading the turn");
      await finish(outcome);
    }
  }

  async function promptFor(l: EngineLease<InferenceEngineClient>, o: TurnOptions): Promise<BuiltPrompt> {
    const context = l.contextSize;
    const maxTokens = o.maxTokens ?? 1024;
    const reserve = o.replyReserveTokens ?? Math.min(maxTokens > 0 ? maxTokens : context, Math.floor(context / 2));
    return buildPrompt(l.client, repos.messages, {
      userId,
      conversation,
      systemPrompt: o.systemPrompt ?? DEFAULT_SYSTEM_PROMPT,
      context: [],
      // The engine needs prompt < context (service.cpp); the rest is the reply's room.
      budget: Math.max(1, context - reserve - 1),
      historyLimit: o.historyLimit ?? 200,
    });
  }

  async function finish(o: TurnOutcome) {
    try {
      await s.streaming?.catch(() => {}); // never race the STREAMING write
      return await repos.requests.endTurn(userId, request.id, o);
    } catch (err) {
      log.error("could not record the turn's outcome", { status: o.status, error: (err as Error)?.message ?? String(err) });
      return undefined;
    }
  }
}

/** PENDING -> STREAMING; a turn already PROCESSING (its caller stopped waiting) stays so. */
async function startStreaming(repos: Repositories, userId: string, id: string, details: { engine: string; startedAt: Date }): Promise<Request> {
  try {
    return await repos.requests.transition(userId, id, "STREAMING", details);
  } catch (err) {
    if (err instanceof InvalidTransitionError && err.from === "PROCESSING") return repos.requests.record(userId, id, details);
    throw err;
  }
}

function checkAborted(signal: AbortSignal) {
  if (signal.aborted) throw new TurnFailure("INTERNAL", "aborted");
}

/** The stored cause of a failure, in words an operator acts on. */
function classify(err: unknown, engine: string | undefined, tokens: number, midStream: boolean): TurnFailure {
  if (err instanceof TurnFailure) return err;
  if (err instanceof EngineUnavailableError) return new TurnFailure("ENGINE_UNAVAILABLE", err.message, { cause: err });
  if (err instanceof PromptTooLongError) return new TurnFailure("INVALID_REQUEST", err.message, { cause: err });
  if (err instanceof EngineCallError) {
    const where = midStream ? ` mid-turn, after ${tokens} generated tokens` : "";
    if (err.failure === "unavailable") return new TurnFailure("ENGINE_ERROR", `engine ${err.address} went away${where}: ${err.message}`, { cause: err });
    if (err.failure === "deadline") return new TurnFailure("TIMEOUT", `engine ${err.address} did not finish in time${where}: ${err.message}`, { cause: err });
    return new TurnFailure("ENGINE_ERROR", `engine ${err.address} failed${where}: ${err.message}`, { cause: err });
  }
  return new TurnFailure("INTERNAL", `internal error${engine ? ` (engine ${engine})` : ""}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}
