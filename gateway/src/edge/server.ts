// The edge-device gRPC server on its own port: jota.v1.Assistant (Converse
// for voice, Chat for text), grpc.health.v1, and server reflection (v1 and
// v1alpha), so a device or grpcurl can discover the contract from the port.
// Every Assistant call is authenticated from its `authorization` metadata
// (a device token; an API key works too) and counted in
// jota_grpc_calls_total by method and final status.
import path from "node:path";
import { Server, ServerCredentials, status, type ServerDuplexStream, type ServerWritableStream } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { repoRoot } from "@jota/control-plane";
import {
  AssistantService,
  type AssistantServer,
  type ChatEvent,
  type ChatRequest,
  type ConverseIn,
  type ConverseOut,
} from "@jota/control-plane/gen/jota/v1/assistant";
import type { GatewayContext } from "../context";
import { authenticateCall } from "./auth";
import { serveChat } from "./chat";
import { CONVERSE_SCOPES, ConverseSession } from "./converse";
import { DeviceConversations } from "./devices";
import { EdgeError, toServiceError } from "./errors";
import { EdgeHealth } from "./health";

export interface EdgeServer {
  address: string;
  close(): Promise<void>;
}

export interface EdgeOptions {
  /** Partial transcripts while an utterance is spoken, every this many ms of audio (default 1000; 0 = none). */
  partialIntervalMs?: number;
  /** Audio on one engine stream before it is replaced by a fresh one at a pause (default 1800 s; engines take at most --max-audio-s). */
  rotateAfterS?: number;
  /** A quiet device's engine stream is half-closed after this long without audio, freeing the decoder (default 20000 ms; under the engines' --stream-idle-s). */
  idleFlushMs?: number;
  /** How long close() lets calls end by themselves before cutting them (default 5000 ms). */
  shutdownGraceMs?: number;
}

const SERVICE = "jota.v1.Assistant";
const STOPPING = new EdgeError(status.UNAVAILABLE, "unavailable", "the server is stopping");

export async function startEdgeServer(ctx: GatewayContext, address: string, opts: EdgeOptions = {}): Promise<EdgeServer> {
  const log = ctx.log.child({ component: "edge" });
  const devices = new DeviceConversations();
  const sessions = new Set<ConverseSession>();
  const stopping = new AbortController();
  const counted = (method: string, code: status) => ctx.metrics.grpcCalls.inc({ method, code: status[code] ?? String(code) });

  const assistant: AssistantServer = {
    converse: (call: ServerDuplexStream<ConverseIn, ConverseOut>) => {
      // Messages wait in grpc-js until the session reads them, after authentication.
      call.pause();
      if (stopping.signal.aborted) {
        call.emit("error", toServiceError(STOPPING));
        return counted("Converse", status.UNAVAILABLE);
      }
      authenticateCall(ctx, call.metadata, CONVERSE_SCOPES).then(
        (p) => {
          if (call.cancelled) return counted("Converse", status.CANCELLED);
          // close() has already stopped the sessions it knows: one started now would run until the grace cuts it.
          if (stopping.signal.aborted) {
            call.emit("error", toServiceError(STOPPING));
            return counted("Converse", status.UNAVAILABLE);
          }
          // JOTA_MAX_STREAMS counts streaming turns: each turn of the session takes a slot while it runs, the idle session none.
          const session = new ConverseSession(
            { ctx, devices, log, partialIntervalMs: opts.partialIntervalMs ?? 1000, rotateAfterS: opts.rotateAfterS ?? 1800, idleFlushMs: opts.idleFlushMs },
            call,
            p,
          );
          sessions.add(session);
          void session.done.then((code) => {
            sessions.delete(session);
            counted("Converse", code);
          });
          session.run();
          call.resume();
        },
        (err) => {
          const e = toServiceError(err);
          call.emit("error", e);
          counted("Converse", e.code);
        },
      );
    },
    chat: (call: ServerWritableStream<ChatRequest, ChatEvent>) => {
      if (stopping.signal.aborted) {
        call.emit("error", toServiceError(STOPPING));
        return counted("Chat", status.UNAVAILABLE);
      }
      void serveChat({ ctx, devices, log }, call, stopping.signal).then((code) => counted("Chat", code));
    },
  };

  const health = new EdgeHealth([SERVICE]);
  const server = new Server({
    // A satellite that vanishes (power, Wi-Fi) is noticed within a minute: its turn is aborted, its engine stream freed.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
  });
  server.addService(AssistantService, assistant);
  server.addService(health.definition, health.implementation);
  new ReflectionService(reflectionDefinition()).addToServer(server);

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const host = address.slice(0, address.lastIndexOf(":"));
  let closing: Promise<void> | undefined;
  return {
    address: `${host}:${port}`,
    close: () =>
      (closing ??= (async () => {
        stopping.abort();
        health.shutdown();
        for (const s of sessions) s.stop(status.UNAVAILABLE, "the server is stopping");
        const grace = opts.shutdownGraceMs ?? 5000;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, grace);
          server.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      })()),
  };
}

/** The protos the port serves, for reflection (proto-loader's descriptors: what @grpc/reflection reads). */
function reflectionDefinition() {
  return loadSync(["jota/v1/assistant.proto", "grpc/health/v1/health.proto"], {
    includeDirs: [path.join(repoRoot, "proto")],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
}
