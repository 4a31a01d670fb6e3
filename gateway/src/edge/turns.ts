// A device's chat turn: which conversation it goes to, and its TurnEvents as
// the pipeline events both Chat and Converse send (intent, reply_delta,
// tool, reply_end, error). One mapping, so a text device and a voice device
// see the same sequence for the same turn.
import { NotFoundError, type TurnEvent, type TurnHandle } from "@jota/control-plane";
import { Route, type ChatEvent } from "@jota/control-plane/gen/jota/v1/assistant";
import type { Principal } from "../auth/principal";
import type { GatewayContext } from "../context";
import { startTurn } from "../turns";
import type { DeviceConversations } from "./devices";

export type PipelineEvent = NonNullable<ChatEvent["event"]>;

export interface DeviceTurn {
  handle: TurnHandle;
  conversationId: string;
}

/**
 * Starts a turn of `p`'s device: in `conversationId` when the device names
 * one (NotFoundError when it is not the caller's), else in the device's
 * current conversation, else in a new one, which becomes the current one.
 */
export async function startDeviceTurn(
  ctx: GatewayContext,
  devices: DeviceConversations,
  p: Principal,
  device: { key: string | undefined; conversationId: string | undefined },
  content: string,
  /** The call's or session's end: aborts the turn, also while it waits for a busy conversation. */
  signal?: AbortSignal,
): Promise<DeviceTurn> {
  let conversationId = device.conversationId ?? devices.get(device.key);
  let started;
  try {
    started = await startTurn(ctx, p, "grpc", { conversationId, content, signal });
  } catch (err) {
    // The remembered conversation was deleted meanwhile: the device starts a new one.
    if (!(err instanceof NotFoundError) || device.conversationId || !conversationId) throw err;
    devices.forget(device.key, conversationId);
    conversationId = undefined;
    started = await startTurn(ctx, p, "grpc", { content, signal });
  }
  devices.set(device.key, started.conversationId);
  return { handle: started.handle, conversationId: started.conversationId };
}

/**
 * Whether startDeviceTurn failed because `signal` aborted it (while it waited for a busy conversation): the
 * turn's wait rejects with an Error carrying the abort's reason (TurnHandle.abort), not the reason itself.
 */
export function abortedBy(err: unknown, signal: AbortSignal): boolean {
  if (!signal.aborted || !(err instanceof Error)) return false;
  const reason: unknown = signal.reason;
  return err === reason || err.message === (typeof reason === "string" ? reason : (reason as Error | undefined)?.message);
}

const ROUTES = { chat: Route.ROUTE_CHAT, command: Route.ROUTE_COMMAND, needs_context: Route.ROUTE_NEEDS_CONTEXT } as const;

/** The pipeline event of one TurnEvent (undefined for `accepted`, which a device does not need). */
export function pipelineEvent(ev: TurnEvent): PipelineEvent | undefined {
  switch (ev.type) {
    case "accepted":
      return undefined;
    case "started":
      return {
        $case: "intent",
        value: { route: ROUTES[ev.route.route] ?? Route.ROUTE_UNSPECIFIED, source: ev.route.source, requestId: ev.requestId, conversationId: ev.conversationId },
      };
    case "delta":
      return { $case: "replyDelta", value: { text: ev.text, index: ev.index } };
    case "tool":
      return { $case: "tool", value: { name: ev.name, argumentsJson: "", resultJson: JSON.stringify({ id: ev.toolCallId, state: ev.state }) } };
    case "done":
      // ABORTED (barge-in, cancel, shutdown) reads finish_reason "cancelled", with the partial reply stored.
      return {
        $case: "replyEnd",
        value: { finishReason: ev.finishReason, promptTokens: ev.usage.promptTokens, completionTokens: ev.usage.completionTokens, requestId: ev.requestId },
      };
    case "error":
      return { $case: "error", value: { code: ev.errorType.toLowerCase(), message: ev.message, requestId: ev.requestId } };
  }
}

/** Every pipeline event of the turn, from its first, until it ends. */
export async function* pipelineEvents(handle: TurnHandle): AsyncGenerator<PipelineEvent> {
  for await (const ev of handle.events()) {
    const out = pipelineEvent(ev);
    if (out) yield out;
  }
}
