// WebSocket endpoints on the HTTP server's port (upgrade requests). One
// endpoint: /api/v1/ws/chat/{user_id}, the chat protocol of ws/chat.ts,
// described for client authors in docs/ws-protocol.md.
//
// Everything is decided before the upgrade, as an ordinary HTTP error with
// Jota's JSON error body (a browser sees only that the socket failed, but
// every other client sees why): an unknown path is 404, a missing or bad
// credential 401, a credential without the `chat` scope or of another user
// than the path's 403. Only then is the socket opened.
//
// Credentials, in this order of precedence:
//   - `Authorization: Bearer <key>` (every client that can set headers);
//   - `Sec-WebSocket-Protocol: jota.v1, bearer.<key>` (browsers cannot set
//     headers; the server answers `jota.v1`, never echoing the key);
//   - `?access_token=<key>`, the last resort: query strings end up in proxy
//     and access logs.
import type http from "node:http";
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer } from "ws";
import type { GatewayContext } from "../context";
import { hasScope } from "../auth/principal";
import { ApiError, toApiError } from "../http/errors";
import { ChatConnection, CLOSE } from "./chat";
import { SUBPROTOCOL } from "./frames";
import { JobEvents } from "./jobs";
import { DEFAULT_OUTBOX, type OutboxOptions } from "./outbox";

export interface WebSockets {
  /** Job watches (watch_job) open now, over all sockets. */
  watchedJobs(): number;
  close(): Promise<void>;
}

export interface WebSocketOptions extends Partial<OutboxOptions> {
  /** Interval of the server's pings; a socket that answered none since the previous one is terminated (default 30 s). */
  heartbeatMs?: number;
  /** How long close() waits for clients to answer its close frame before cutting them (default 2 s). */
  closeTimeoutMs?: number;
  /** Jobs one socket may watch at once (watch_job; default 32). */
  maxJobWatches?: number;
}

const CHAT_PATH = /^\/api\/v1\/ws\/chat\/([^/]+)\/?$/;
const ROUTE = "/api/v1/ws/chat/:user_id";

export function attachWebSockets(server: http.Server, ctx: GatewayContext, opts: WebSocketOptions = {}): WebSockets {
  const log = ctx.log.child({ component: "ws" });
  const outbox: OutboxOptions = {
    highWaterBytes: opts.highWaterBytes ?? DEFAULT_OUTBOX.highWaterBytes,
    lowWaterBytes: opts.lowWaterBytes ?? DEFAULT_OUTBOX.lowWaterBytes,
    pollMs: opts.pollMs ?? DEFAULT_OUTBOX.pollMs,
  };
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: ctx.config.gateway.wsMaxFrameBytes,
    // Chat frames are small and many; compression would cost CPU per token for little.
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (offered) => (offered.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  const conns = new Set<ChatConnection>();
  let closing = false;
  // The ingest jobs' changes, fanned out to the sockets that watch them (none without Redis).
  const jobEvents = ctx.stack.jobs ? new JobEvents(ctx.stack.jobs.events, ctx.stack.jobs.queue, log) : undefined;
  const jobs = { events: jobEvents, maxWatches: opts.maxJobWatches };

  const heartbeat = setInterval(() => {
    for (const c of conns) if (!c.heartbeat()) {
      log.info("websocket peer missed its heartbeat; terminating", {});
      c.ws.terminate();
    }
  }, opts.heartbeatMs ?? 30_000);
  heartbeat.unref();

  const count = (status: number) => ctx.metrics.httpRequests.inc({ method: "GET", route: ROUTE, status: String(status) });

  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => {}); // a client gone mid-handshake is not the server's error
    void (async () => {
      try {
        if (closing) throw new ApiError(503, "internal_error", "the server is shutting down", {}, { "Retry-After": "5" });
        const url = new URL(req.url ?? "/", "http://localhost");
        const m = CHAT_PATH.exec(url.pathname);
        if (!m) throw new ApiError(404, "not_found", `no WebSocket endpoint at ${url.pathname}`, { path: url.pathname });
        const credential = credentialOf(req, url);
        const p = await ctx.auth.authenticate(credential);
        if (!hasScope(p, "chat")) throw ApiError.forbidden("this credential lacks the 'chat' scope");
        const pathUser = safeDecode(m[1]!).toLowerCase();
        // Not even an ADMIN: a chat socket speaks as its user, and only that user's own credential may open it.
        if (pathUser !== p.userId)
          throw new ApiError(403, "forbidden", "the path's user_id is not the user of this credential", { user_id: pathUser });
        if (socket.destroyed) return;
        wss.handleUpgrade(req, socket, head, (ws) => {
          count(101);
          if (closing) return ws.close(CLOSE.goingAway, "server shutting down");
          const c = new ChatConnection(ctx, ws, p, credential!, outbox, log.child({ userId: p.userId, credentialId: p.credentialId }), jobs);
          conns.add(c);
          ws.once("close", () => conns.delete(c));
        });
      } catch (err) {
        const e = toApiError(err);
        if (e.code === "internal_error" && e.status === 500) log.error("websocket upgrade failed", { error: (err as Error)?.stack ?? String(err) });
        count(e.status);
        refuse(socket, e);
      }
    })();
  };
  server.on("upgrade", onUpgrade);

  return {
    watchedJobs: () => jobEvents?.size ?? 0,
    close: async () => {
      closing = true;
      clearInterval(heartbeat);
      server.off("upgrade", onUpgrade);
      const open = [...conns];
      const closed = Promise.all(open.map((c) => new Promise<void>((r) => (c.ws.readyState === c.ws.CLOSED ? r() : c.ws.once("close", () => r())))));
      for (const c of open) c.ws.close(CLOSE.goingAway, "server shutting down");
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([closed, new Promise<void>((r) => (timer = setTimeout(r, opts.closeTimeoutMs ?? 2000)))]);
      clearTimeout(timer);
      for (const c of conns) c.ws.terminate();
      await closed;
      jobEvents?.close();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
}

/**
 * The credential of an upgrade request, as `authenticate` takes it (the
 * header's value, or the bare key). A subprotocol list without jota.v1 is
 * refused: the client would fail the handshake anyway, and this says why.
 */
function credentialOf(req: http.IncomingMessage, url: URL): string | undefined {
  const offered = (req.headers["sec-websocket-protocol"] ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (offered.length && !offered.includes(SUBPROTOCOL))
    throw ApiError.validation("Sec-WebSocket-Protocol", `offer the subprotocol ${SUBPROTOCOL} (and bearer.<key> to authenticate)`, { offered: offered.filter((p) => !p.startsWith("bearer.")) });
  if (req.headers.authorization !== undefined) return req.headers.authorization;
  const fromProtocol = offered.find((p) => p.startsWith("bearer."));
  if (fromProtocol) return fromProtocol.slice("bearer.".length);
  return url.searchParams.get("access_token") ?? undefined;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** An HTTP error on the raw socket, in Jota's JSON error shape; then the connection is closed. */
function refuse(socket: Duplex, e: ApiError) {
  if (socket.destroyed) return;
  const body = JSON.stringify({ error: { code: e.code, message: e.message, details: e.details } });
  const headers = [
    `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? "Error"}`,
    "Connection: close",
    "Content-Type: application/json; charset=utf-8",
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(e.headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.once("finish", () => socket.destroy());
  socket.end(`${headers.join("\r\n")}\r\n\r\n${body}`);
}
