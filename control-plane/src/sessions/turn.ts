// The chat turn, from "user X said Y in conversation Z" to a stored reply.
//
// Order of work. The engine call goes out before anything is written, and
// nothing is streamed before it is stored:
//   0. the conversation (the user's, else NotFoundError) and its lock: one
//      turn at a time per conversation (locks.ts);
//   1. route: the rules decide at once (router.ts); when the routing model
//      must decide, the turn is stored first (step 4), as that is an engine
//      call of its own;
//   2. engine: the conversation's own engine (it holds the KV cache) or,
//      when that one is gone, another (stored as the new affinity);
//   3. prompt: system prompt, retrieved context (a later issue fills it),
//      summary, and the newest history that fits the engine's context
//      (prompt.ts: exact counts where stored, bounds otherwise);
//   4. Generate is sent with the conversation's engine session id (so the
//      engine reuses its KV cache) and the request id made here (ids.ts);
//      while the engine prefills, one statement stores the request
//      (STREAMING, route, engine), the user's message and the affinity
//      (requests.beginTurn). Every event waits for that commit: the first
//      is `accepted`, then the engine's, each forwarded as it comes. A turn
//      that ends before its engine call (refused, aborted, no engine) is
//      stored the same way, with its outcome: what the user said is kept
//      whatever fails, and a client that was told a request id can always
//      find the request. (Measured on PGlite, the old order, every step
//      written before the next one started, cost 72 ms of time to first
//      token; this one a few: bench:control-plane.)
//   5. endTurn: the final state (COMPLETED, FAILED with its cause, ABORTED
//      with the partial reply) with usage and timings, the reply, and the
//      token counts of the prompt's uncounted messages, in one statement.
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
import type { Conversation, Message, Prisma, Request, RequestErrorType } from "@prisma/client";
import { uuidv7 } from "../db/ids";
import type { Repositories, TurnOutcome } from "../db/repositories";
import type { BeginTurnInput, MessageTokens } from "../db/repositories/requests";
import { EngineCallError, type InferenceEngineClient } from "../engines/clients";
import { EngineUnavailableError, type EngineLease, type EnginePool } from "../engines/pool";
import { FinishReason, type GenerateDone, type GenerateEvent, GenerateRequest, type GenerateStarted, type SamplingParams } from "../gen/jota/v1/inference";
import type { Logger } from "../log";
import { contextEntry, fitSources, RetrievalUnavailableError, type RetrievedSource, type Retriever } from "../memory/retrieve";
import { MEMORY_KIND, memorySource } from "../memory/memories";
import { decisionRecord, type IntentRouter, type RouteDecision } from "../router/router";
import { ConversationLocks } from "./locks";
import { buildPrompt, countMessages, DEFAULT_SYSTEM_PROMPT, PromptTooLongError, type BuiltPrompt, type PromptMessage } from "./prompt";
import { InvalidTransitionError, NotFoundError } from "../db/repositories";

export interface TurnDeps {
  repos: Repositories;
  pool: EnginePool;
  /** Longest silence of the engine once it has started a turn (JOTA_ENGINE_STALL_MS; default 5 minutes, 0: none). */
  engineStallMs?: number;
  /** Without one every turn is chat (source "default"). */
  router?: IntentRouter;
  logger: Logger;
  /** One turn at a time per conversation; without it turns are not serialised. */
  locks?: ConversationLocks;
  /**
   * Retrieval of the user's memories and documents into the prompt: for turns
   * the router sends to needs_context ("auto"), or for every turn ("always").
   * Without it no turn retrieves.
   */
  retrieval?: { retriever: Retriever; mode: "auto" | "always" };
  /**
   * Called once a turn's outcome is stored, without waiting for it (it must
   * not throw): the stack queues memory extraction and summaries from it.
   */
  afterTurn?: (t: TurnSettled) => void;
}

/** A turn whose outcome is stored (TurnDeps.afterTurn). */
export interface TurnSettled {
  userId: string;
  conversationId: string;
  requestId: string;
  status: "COMPLETED" | "FAILED" | "ABORTED";
  /** The history did not fit: a summary through this message would let the next turns carry it. */
  summarizeThroughId?: string;
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
  /** This turn's own engine-silence limit, instead of deps.engineStallMs. */
  stallMs?: number;
  /** When the conversation has a turn running: wait for it (default) or fail at once with ConversationBusyError. */
  ifBusy?: "wait" | "fail";
}

export interface TurnUsage {
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
}

export interface TurnTimings {
  /** From the turn's start (its conversation locked) to the first streamed token (undefined without one). */
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
  /** What retrieval put in the prompt, best first (empty when the turn retrieved nothing). */
  sources: RetrievedSource[];
  /** Set when retrieval was wanted but could not be done: the reply has no context (VECTOR_STORE_UNAVAILABLE on the request). */
  retrievalError?: string;
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
 * Runs one chat turn. Throws, with nothing stored, when the conversation is
 * not the user's (NotFoundError), or is busy and `ifBusy` is "fail"
 * (ConversationBusyError), or the signal aborted the wait for it, or the
 * turn's first write fails (the database is down, or the conversation was
 * deleted meanwhile; the engine call, if sent, is cancelled). Otherwise every
 * outcome is recorded on the request and reported as the last event (done or
 * error), after `accepted`.
 */
export async function* turn(deps: TurnDeps, input: TurnInput, opts: TurnOptions = {}): AsyncGenerator<TurnEvent, void, undefined> {
  const historyLimit = opts.historyLimit ?? 200;
  // Busy before the read as well as after it: on PostgreSQL the read runs beside the turn that holds the
  // conversation, which may end and release it before the read returns, without the history read having
  // seen its reply.
  const busyBefore = deps.locks?.busy(input.conversationId.toLowerCase()) ?? false;
  let { conversation, history } = await deps.repos.conversations.forTurn(input.userId, input.conversationId, historyLimit);
  const waits = busyBefore || (deps.locks?.busy(conversation.id) ?? false);
  const release = await deps.locks?.acquire(conversation.id, { wait: opts.ifBusy !== "fail", signal: opts.signal });
  try {
    // The turn before this one has added to the history (and maybe moved the conversation) meanwhile.
    if (waits) ({ conversation, history } = await deps.repos.conversations.forTurn(input.userId, input.conversationId, historyLimit));
    yield* lockedTurn(deps, input, opts, conversation, history);
  } finally {
    release?.();
  }
}

async function* lockedTurn(
  deps: TurnDeps,
  input: TurnInput,
  opts: TurnOptions,
  conversation: Conversation,
  storedHistory: Message[],
): AsyncGenerator<TurnEvent, void, undefined> {
  const { repos, pool } = deps;
  const { userId } = input;
  const t0 = performance.now();
  // Made here, not by the database: the engine gets the request id before the request is written.
  const requestId = uuidv7();
  const userMessageId = uuidv7();
  const log = deps.logger.child({ component: "turn", requestId, conversationId: conversation.id });

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
    /** The first write (request + user message), once issued; `accepted` goes out when it has committed. */
    begun: undefined as Promise<unknown> | undefined,
    beginFailed: undefined as { err: unknown } | undefined,
    accepted: false,
    /** The outcome was written (finish() ran). */
    recorded: false,
    decision: undefined as RouteDecision | undefined,
    /** PENDING -> STREAMING, when the turn was stored before its engine call (routing by model). */
    streaming: undefined as Promise<unknown> | undefined,
    sources: [] as RetrievedSource[],
    /** When retrieval began: a document deleted since may be cited (eraseForgotten). */
    retrievedAt: undefined as Date | undefined,
    retrievalError: undefined as string | undefined,
    /** The prompt sent, whose uncounted messages are counted once the reply has streamed and stored with the outcome. */
    counts: undefined as { client: InferenceEngineClient; prompt: BuiltPrompt } | undefined,
  };
  let lease: EngineLease<InferenceEngineClient> | undefined;
  let outcome: TurnOutcome | undefined;

  const begin = (extra: Partial<BeginTurnInput> = {}): Promise<unknown> => {
    const route = s.decision && decisionRecord(s.decision);
    s.begun ??= repos.requests
      .beginTurn(userId, conversation.id, { content: input.content, traceId: input.traceId, requestId, messageId: userMessageId, route, ...extra })
      .catch((err: unknown) => {
        s.beginFailed = { err };
        ac.abort(err); // nothing is recorded: the engine must not go on either
        throw err;
      });
    return s.begun;
  };
  /** The `accepted` event, once: after the first write has committed, before any other event. */
  async function* accept(): AsyncGenerator<TurnEvent, void, undefined> {
    if (s.accepted) return;
    await begin();
    s.accepted = true;
    yield { type: "accepted", requestId, conversationId: conversation.id, userMessageId };
  }

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
      ...(s.sources.length > 0 ? { sources: s.sources as unknown as Prisma.InputJsonValue } : {}),
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
      // 2. Route: rules decide at once; a routing model is an engine call, so the turn is stored first.
      s.decision = deps.router
        ? deps.router.byRules(input.content) ?? (deps.router.usesModel ? undefined : { route: "chat", source: "default", detail: "no rule matched" })
        : { route: "chat", source: "default", detail: "no router" };
      if (!s.decision) {
        yield* accept();
        s.decision = await deps.router!.route(input.content, { requestId, signal: ac.signal });
        await repos.requests.setRoute(userId, requestId, decisionRecord(s.decision));
      }
      const decision = s.decision;

      // Retrieval: the user's memories and documents for this message (never fails the turn).
      let candidates: RetrievedSource[] = [];
      const retrieval = deps.retrieval;
      if (retrieval && (retrieval.mode === "always" || decision.route === "needs_context")) {
        // Retrieval calls the engine and the store: the turn is stored (and its id known) first.
        yield* accept();
        try {
          s.retrievedAt = new Date();
          candidates = await retrieval.retriever.retrieve(userId, input.content, { signal: ac.signal, requestId });
        } catch (err) {
          if (!(err instanceof RetrievalUnavailableError)) throw err;
          s.retrievalError = err.message;
          log.warn("answering without retrieved context", { error: err.message });
        }
      }
      // command and needs_context are answered as chat until tools and retrieval exist (later issues).

      // 3-5. Engine, prompt, stream; a failure before anything was streamed tries another engine.
      let history: PromptMessage[] = [...storedHistory, { id: userMessageId, role: "USER", content: input.content, tokens: null }];
      const exclude = new Set<string>();
      let yielded = false;
      let recounted = false;
      for (;;) {
        checkAborted(ac.signal);
        lease = pool.pickInference({ affinity: conversation.engineAffinity, exclude });
        const address = lease.address;
        const moved = address !== conversation.engineAffinity ? address : undefined;
        s.engine = address;
        let events: AsyncGenerator<GenerateEvent> | undefined;
        try {
          if (moved && s.begun) {
            await s.begun; // after the first write, which may carry the previous engine as the affinity
            await repos.conversations.setAffinity(userId, conversation.id, address);
          }
          conversation.engineAffinity = address;
          s.sources = candidates.length > 0 ? await fitSources(lease.client, candidates, retrievalBudget(lease.contextSize)) : [];
          let prompt: BuiltPrompt;
          try {
            prompt = await promptFor(lease, history, opts);
          } catch (err) {
            if (!(err instanceof PromptTooLongError) || s.sources.length === 0) throw err;
            // The context took the room the conversation needs: the turn goes on without it.
            log.warn("retrieved context left out: the prompt did not fit with it", { sources: s.sources.length });
            s.sources = [];
            prompt = await promptFor(lease, history, opts);
          }
          checkAborted(ac.signal);
          const req = GenerateRequest.fromPartial({
            input: { $case: "messages", value: { items: prompt.messages } },
            sessionId: conversation.engineSessionId,
            sampling: opts.sampling,
            maxTokens: opts.maxTokens ?? 1024,
            stop: opts.stop ?? [],
            constraint: opts.jsonSchema !== undefined ? { $case: "jsonSchema", value: opts.jsonSchema } : undefined,
            requestId,
          });
          // The engine call goes out first (next() starts it); the turn's first write runs while the
          // engine prefills, and every event waits for it to commit: nothing is streamed before it is stored.
          events = lease.client.generate(req, { signal: ac.signal, deadlineMs: opts.deadlineMs, stallMs: opts.stallMs ?? deps.engineStallMs ?? DEFAULT_STALL_MS });
          let next = events.next();
          next.catch(() => {}); // awaited below
          await new Promise<void>((r) => setImmediate(r)); // let grpc-js put the call on the wire before PGlite holds the thread
          if (!s.begun) {
            s.streaming = begin({ status: "STREAMING", engine: address, startedAt: new Date(), affinity: moved });
            // `accepted` as soon as the turn is stored, while the engine prefills (or queues: all its
            // slots may be busy for a long time, and the caller needs the request id meanwhile).
            yield* accept();
          } else if (!s.streaming) s.streaming = startStreaming(repos, userId, requestId, { engine: address, startedAt: new Date() });
          else s.streaming = s.streaming.then(() => repos.requests.record(userId, requestId, { engine: address })); // another engine took over
          s.streaming.catch(() => {});
          s.counts = { client: lease.client, prompt };
          for (let r = await next; !r.done; r = await (next = events.next())) {
            const e = r.value.event;
            if (!e) continue;
            if (!yielded) {
              yield* accept();
              await s.streaming;
            }
            if (e.$case === "started") {
              s.started = e.value;
              yielded = true;
              yield {
                type: "started",
                requestId,
                conversationId: conversation.id,
                userMessageId,
                engine: address,
                route: decision,
                promptTokens: e.value.promptTokens,
                cachedTokens: e.value.cachedTokens,
                queueMs: e.value.queueMs,
                historyMessages: prompt.historyMessages,
                trimmedMessages: prompt.trimmedMessages,
              };
            } else if (e.$case === "delta") {
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
          // A failure of ours (a write) while the call runs: stop the engine's generation (the generator's
          // return() cancels the call unless it already ended).
          void events?.return(undefined).catch(() => {});
          const held = lease;
          lease = undefined;
          held?.release(err); // an engine that went away is marked down now
          if (ac.signal.aborted) throw err;
          const e = err instanceof EngineCallError ? err : undefined;
          // Gone, or full (its queue filled between the pool's Info polls): another engine may serve it.
          if (!yielded && (e?.failure === "unavailable" || e?.failure === "busy") && exclude.size + 1 < pool.inference.length) {
            exclude.add(address);
            log.warn("engine failed before streaming; trying another", { engine: address, error: e.message });
            continue;
          }
          // The prompt did not fit although the stored counts said it would: they were measured under
          // another model (another engine, or this one before its model changed). Once more, with every
          // message counted on this engine (bounded, then exactly near the limit, as if never counted).
          if (!yielded && !recounted && e?.failure === "invalid" && /the context holds/.test(e.message)) {
            recounted = true;
            history = history.map((m) => ({ ...m, tokens: null }));
            log.warn("stored token counts did not match the engine's model; counting again", { engine: address });
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
      else
        outcome = {
          status: "COMPLETED",
          reply: { content: s.text },
          finishReason,
          ...details(),
          // Answered, but without the context it should have had: the request says why.
          ...(s.retrievalError ? { errorType: "VECTOR_STORE_UNAVAILABLE" as const, error: s.retrievalError } : {}),
        };
    } catch (err) {
      if (s.beginFailed) throw s.beginFailed.err; // nothing is stored, so nothing can be reported on a request
      if (ac.signal.aborted) outcome = aborted("aborted by the caller");
      else {
        const f = err instanceof TurnFailure ? err : classify(err, s.engine, s.completionTokens, false);
        if (f.errorType === "INTERNAL") log.error("turn failed", { error: (err as Error)?.stack ?? String(err) });
        else log.warn("turn failed", { errorType: f.errorType, error: f.message });
        // A failed turn's partial text is not stored: the next turn's history should not carry half an answer.
        outcome = { status: "FAILED", errorType: f.errorType, error: f.message, finishReason: s.done ? FINISH[s.done.finishReason] : "error", ...details() };
      }
    }

    // A turn that ended before its engine call is stored now, then its outcome.
    try {
      yield* accept();
    } catch (err) {
      outcome = undefined; // no request to record it on
      throw err;
    }
    const stored = await finish(outcome);
    if (outcome.status === "FAILED")
      yield { type: "error", requestId, status: "FAILED", errorType: outcome.errorType!, message: outcome.error!, userMessageId };
    else
      yield {
        type: "done",
        requestId,
        status: outcome.status,
        finishReason: outcome.finishReason as string,
        text: s.text,
        replyMessageId: stored?.reply?.id,
        usage: usage(),
        timings: timings(),
        sources: s.sources,
        ...(s.retrievalError ? { retrievalError: s.retrievalError } : {}),
      };
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    if (!s.recorded && !s.beginFailed) {
      // The consumer stopped iterating (return() at a yield, `accepted` included): record what was
      // decided by then, or ABORTED; the engine call is cancelled.
      ac.abort();
      lease?.release(new EngineCallError(lease.address, "Generate", 1, "cancelled", "the caller stopped reading"));
      const o = outcome ?? aborted("the caller stopped reading the turn");
      await begin().then(
        () => finish(o),
        () => {},
      );
    }
  }

  async function promptFor(l: EngineLease<InferenceEngineClient>, history: PromptMessage[], o: TurnOptions): Promise<BuiltPrompt> {
    const context = l.contextSize;
    const maxTokens = o.maxTokens ?? 1024;
    const reserve = o.replyReserveTokens ?? Math.min(maxTokens > 0 ? maxTokens : context, Math.floor(context / 2));
    return buildPrompt(l.client, {
      conversation,
      systemPrompt: o.systemPrompt ?? DEFAULT_SYSTEM_PROMPT,
      context: s.sources.map((src, i) => contextEntry(src, i + 1)),
      // The engine needs prompt < context (service.cpp); the rest is the reply's room.
      budget: Math.max(1, context - reserve - 1),
      history,
    });
  }

  /**
   * The counts the prompt did not need, measured after the reply (not while
   * the engine prefills: on a small machine every cycle taken then delays
   * the first token). Only a cache: without them the next turn bounds again.
   */
  async function measured(): Promise<MessageTokens[]> {
    if (!s.counts) return [];
    const { client, prompt } = s.counts;
    if (prompt.toCount.length === 0) return prompt.counted;
    try {
      // The newest first (the turn's own message); older ones wait for later turns: each is one engine call.
      return [...prompt.counted, ...(await countMessages(client, prompt.toCount.slice(-COUNT_AFTER_TURN)))];
    } catch (err) {
      log.debug("could not count the prompt's messages", { error: (err as Error)?.message ?? String(err) });
      return prompt.counted;
    }
  }

  /**
   * A memory or document this turn cited may have been forgotten or deleted
   * while the turn ran: the erasure of its text could not reach a request not
   * yet written, so it is done here, in this request only. A memory is gone
   * when its row is; a document when its deletion was noted since retrieval
   * began (no document row is no proof: chunks can be ingested without one,
   * and a document of the same source may have been uploaded again since).
   */
  async function eraseForgotten(): Promise<void> {
    const memories = s.sources.filter((x) => x.kind === MEMORY_KIND).map((x) => x.id);
    const documents = s.sources.filter((x) => x.kind !== MEMORY_KIND).map((x) => x.source);
    try {
      if (memories.length > 0) {
        const alive = new Set((await repos.memories.byIds(userId, memories)).map((m) => m.id));
        for (const id of memories) if (!alive.has(id)) await repos.requests.eraseSource(userId, memorySource(id), requestId);
      }
      if (documents.length > 0 && s.retrievedAt)
        for (const source of await repos.documents.erasedSince(userId, documents, s.retrievedAt)) await repos.requests.eraseSource(userId, source, requestId);
    } catch (err) {
      log.error("could not erase a forgotten memory or deleted document from the turn's sources", { error: (err as Error)?.message ?? String(err) });
    }
  }

  async function finish(o: TurnOutcome) {
    s.recorded = true;
    try {
      await s.streaming?.catch(() => {}); // never race the STREAMING write
      // Counts only after a completed turn (a failed engine would only time out), and a few at a time.
      const counted = o.status === "COMPLETED" ? await measured() : s.counts?.prompt.counted ?? [];
      const stored = await endWithRetries(() => repos.requests.endTurn(userId, requestId, o, counted), log);
      await eraseForgotten();
      try {
        const through = s.counts?.prompt.summarizeThroughId;
        deps.afterTurn?.({ userId, conversationId: conversation.id, requestId, status: o.status, ...(through ? { summarizeThroughId: through } : {}) });
      } catch (err) {
        log.error("afterTurn failed", { error: (err as Error)?.message ?? String(err) });
      }
      return stored;
    } catch (err) {
      log.error("could not record the turn's outcome", { status: o.status, error: (err as Error)?.message ?? String(err) });
      return undefined;
    }
  }
}

/** Waits before each new attempt at a turn's last write. */
const END_RETRIES_MS = [100, 500, 2000];

/**
 * A turn's last write, tried again on a transient failure (a dropped
 * connection, a database failover): an outcome never written leaves the
 * request in flight and the reply unstored. Undefined when an earlier
 * attempt turns out to have committed (the request is final already).
 */
async function endWithRetries<T>(write: () => Promise<T>, log: Logger): Promise<T | undefined> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await write();
    } catch (err) {
      if (attempt > 0 && err instanceof InvalidTransitionError) return undefined;
      if (attempt >= END_RETRIES_MS.length || err instanceof InvalidTransitionError || err instanceof NotFoundError) throw err;
      log.warn("could not record the turn's outcome; trying again", { attempt: attempt + 1, error: (err as Error)?.message ?? String(err) });
      await new Promise((r) => setTimeout(r, END_RETRIES_MS[attempt]));
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
    if (err.failure === "stalled") return new TurnFailure("TIMEOUT", `engine ${err.address} stopped sending${where}: ${err.message}`, { cause: err });
    // The engine's own check of the request (a stop string, the schema, the chat template, the context): the caller's to fix.
    if (err.failure === "invalid") return new TurnFailure("INVALID_REQUEST", `engine ${err.address} refused the request: ${err.message}`, { cause: err });
    if (err.failure === "busy") return new TurnFailure("ENGINE_UNAVAILABLE", `engine ${err.address} is full${where}: ${err.message}`, { cause: err });
    return new TurnFailure("ENGINE_ERROR", `engine ${err.address} failed${where}: ${err.message}`, { cause: err });
  }
  return new TurnFailure("INTERNAL", `internal error${engine ? ` (engine ${engine})` : ""}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

/** JOTA_ENGINE_STALL_MS's default: far above any gap between a CPU engine's events, prefill of a long prompt included. */
const DEFAULT_STALL_MS = 300_000;

/** Prompt tokens retrieved context may take: a quarter of the context, at most 1024. */
function retrievalBudget(contextSize: number): number {
  return Math.min(1024, Math.floor(contextSize / 4));
}

/** Most uncounted messages a turn counts after its reply (one CountTokens call each, at once). */
const COUNT_AFTER_TURN = 8;
