// The edge-device gRPC server (jota.v1.Assistant), on its own port.
// (Being written: this version binds the port and serves nothing yet.)
import { Server, ServerCredentials } from "@grpc/grpc-js";
import type { GatewayContext } from "../context";

export interface EdgeServer {
  address: string;
  close(): Promise<void>;
}

export async function startEdgeServer(_ctx: GatewayContext, address: string): Promise<EdgeServer> {
  const server = new Server();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const host = address.slice(0, address.lastIndexOf(":"));
  return {
    address: `${host}:${port}`,
    close: () => new Promise<void>((r) => server.tryShutdown(() => r())),
  };
}
