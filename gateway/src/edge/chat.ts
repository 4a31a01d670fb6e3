// Chat: one text turn of a device without audio. Until the turn is accepted
// (its request and the user's message are stored) a refusal is the call's
// status (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND,
// RESOURCE_EXHAUSTED, UNAVAILABLE); after that the turn's outcome is an
// event (reply_end, or error with the request id) and the call ends OK.
// Cancelling the call aborts the turn (recorded ABORTED, partial reply kept).
import type { ServerWritableStream } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import type { Logger } from "@jota/control-plane";
import type { ChatEvent, ChatRequest } from "@jota/control-plane/gen/jota/v1/assistant";
import type { GatewayContext } from "../context";
import { authenticateCall } from "./auth";
import type { DeviceConversations } from "./devices";
import { EdgeError, toServiceError } from "./errors";
import { chatInput } from "./settings";
import { abortedBy, pipelineEvents, startDeviceTurn } from "./turns";

export interface ChatDeps {
  ctx: GatewayContext;
  devices: DeviceConversations;
  log: Logger;
}

/** Serves one Chat call; resolves with the status it ended with. */
export async function serveChat(deps: ChatDeps, call: ServerWritableStream<ChatRequest, ChatEvent>, stopping: AbortSignal): Promise<status> {
  const { ctx, devices } = deps;
  let cancelled = false;
  // Ends the turn whenever it comes, even while the turn still waits for a busy conversation.
  const end = new AbortController();
  const onCancel = () => {
    cancelled = true;
    end.abort("the device cancelled the call");
  };
  call.on("cancelled", onCancel);
  call.on("error", () => {}); // a broken connection also reports `cancelled`
  const onStop = () => end.abort("the server is stopping");
  stopping.addEventListener("abort", onStop, { once: true });
  if (stopping.aborted) onStop();
  try {
    const p = await authenticateCall(ctx, call.metadata, ["chat"]);
    const input = chatInput(call.request);
    const { handle } = await startDeviceTurn(ctx, devices, p, { key: devices.key(p, input.deviceId), conversationId: input.conversationId }, input.text, end.signal);
    for await (const event of pipelineEvents(handle)) {
      if (cancelled) return status.CANCELLED;
      // A device that reads slowly holds the forwarding, not the turn: the events wait in the turn's log.
      if (!call.write({ event })) await drained(call);
    }
    if (cancelled) return status.CANCELLED;
    call.end();
    return status.OK;
  } catch (err) {
    if (cancelled) return status.CANCELLED;
    // The server stopping ends a turn that still waited for a busy conversation: that is no internal error.
    const e = toServiceError(abortedBy(err, end.signal) && stopping.aborted ? new EdgeError(status.UNAVAILABLE, "unavailable", "the server is stopping") : err);
    if (e.code === status.INTERNAL) deps.log.error("chat failed", { error: (err as Error)?.stack ?? String(err) });
    if (e.code === status.RESOURCE_EXHAUSTED && e.jotaCode !== "rate_limited") ctx.metrics.rateLimited.inc({ interface: "grpc" });
    call.emit("error", e);
    return e.code;
  } finally {
    stopping.removeEventListener("abort", onStop);
  }
}

function drained(call: ServerWritableStream<ChatRequest, ChatEvent>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      call.off("cancelled", done);
      resolve();
    };
    call.once("drain", done);
    call.once("cancelled", done);
  });
}
