// A running gateway: the HTTP server (Express app + WebSocket upgrades) and
// the edge gRPC server, over one Stack. `npm start` and the tests start it
// the same way; close() stops accepting, aborts running turns (recorded
// ABORTED) and closes the servers, leaving the Stack to its owner.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createApp } from "./app";
import { createContext, type GatewayContext } from "./context";
import { startEdgeServer, type EdgeServer } from "./edge/server";
import type { Stack } from "./stack";
import { attachWebSockets, type WebSockets } from "./ws/server";

export interface Gateway {
  ctx: GatewayContext;
  /** http://host:port */
  url: string;
  /** host:port of jota.v1.Assistant */
  grpcAddress: string;
  close(): Promise<void>;
}

export interface GatewayListen {
  host: string;
  httpPort: number;
  grpcPort: number;
}

export async function startGateway(stack: Stack, listen: GatewayListen): Promise<Gateway> {
  const ctx = createContext(stack);
  const server = http.createServer(createApp(ctx));
  // Streams can be long; Node's 5-minute request timeout would cut them.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  const sockets: WebSockets = attachWebSockets(server, ctx);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.httpPort, listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  let edge: EdgeServer;
  try {
    edge = await startEdgeServer(ctx, `${listen.host}:${listen.grpcPort}`);
  } catch (err) {
    server.close();
    throw err;
  }
  const { port } = server.address() as AddressInfo;
  const hostForUrl = listen.host.includes(":") ? `[${listen.host}]` : listen.host;
  let closing: Promise<void> | undefined;
  return {
    ctx,
    url: `http://${hostForUrl}:${port}`,
    grpcAddress: edge.address,
    close: () =>
      (closing ??= (async () => {
        const stopped = new Promise<void>((r) => server.close(() => r()));
        await Promise.all([sockets.close(), edge.close()]);
        await stack.runner.close();
        server.closeAllConnections();
        await stopped;
      })()),
  };
}
