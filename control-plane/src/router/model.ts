// Routing by the chat model, for turns no rule decides: one short Generate
// whose output is constrained by a JSON schema (the engine turns it into a
// grammar), so the reply can only be {"route": "<one of the routes>"}.
import type { GenerateEvent, GenerateRequest } from "../gen/jota/v1/inference";
import { ROUTES, type Route } from "./rules";

/** A Generate call: the pool's engine client provides it (engines/clients.ts). */
export type Generate = (req: GenerateRequest, signal?: AbortSignal) => AsyncIterable<GenerateEvent>;

export class RouterModelError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RouterModelError";
  }
}

export const ROUTE_SCHEMA = {
  type: "object",
  properties: { route: { type: "string", enum: [...ROUTES] } },
  required: ["route"],
  additionalProperties: false,
} as const;

const SYSTEM = `You route messages sent to a home assistant. The user may write in Spanish or English.
Answer with JSON: {"route": "command"} when the message asks to operate a device or run an action (lights, heating, music, alarms, reminders);
{"route": "needs_context"} when answering needs the user's own notes, documents or earlier conversations;
{"route": "chat"} for everything else (greetings, small talk, general questions, writing).`;

/** The request the router sends: greedy, short, schema-constrained. */
export function routerRequest(text: string, requestId = ""): GenerateRequest {
  return {
    input: {
      $case: "messages",
      value: {
        items: [
          { role: "system", content: SYSTEM },
          { role: "user", content: text },
        ],
      },
    },
    sessionId: "", // no KV reuse: one-off, and it must not evict a conversation's cache
    sampling: { temperature: 0 },
    maxTokens: 24,
    stop: [],
    constraint: { $case: "jsonSchema", value: JSON.stringify(ROUTE_SCHEMA) },
    chatTemplate: "",
    noGenerationPrompt: false,
    requestId,
  };
}

/** The route in the model's (constrained) output. */
export function parseRouterOutput(output: string): Route {
  let v: unknown;
  try {
    v = JSON.parse(output);
  } catch {
    throw new RouterModelError(`model output is not JSON: ${JSON.stringify(output.slice(0, 200))}`);
  }
  const route = (v as { route?: unknown } | null)?.route;
  if (typeof route !== "string" || !ROUTES.includes(route as Route))
    throw new RouterModelError(`model output has no valid route: ${JSON.stringify(output.slice(0, 200))}`);
  return route as Route;
}

/** Runs the routing request through `generate` and returns the route it chose. */
export async function classifyWithModel(generate: Generate, text: string, opts: { requestId?: string; signal?: AbortSignal } = {}): Promise<Route> {
  let output = "";
  for await (const ev of generate(routerRequest(text, opts.requestId), opts.signal)) {
    if (ev.event?.$case === "delta") output += ev.event.value.text;
    else if (ev.event?.$case === "done" && ev.event.value.error) throw new RouterModelError(`engine: ${ev.event.value.error}`);
  }
  return parseRouterOutput(output);
}
