// A gRPC server that speaks the inference engine's contract (health and
// jota.v1.Inference) with whatever behaviour a test needs: the failures a
// real engine cannot be made to show on demand (a hung Info, a stream that
// goes silent, a connection dropped before streaming, a full queue). Tests
// that use it say so; everything else runs against real engines.
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { HealthCheckResponse_ServingStatus, HealthService, type HealthServer } from "../../src/gen/grpc/health/v1/health";
import { InferenceInfo, InferenceService, type InferenceServer } from "../../src/gen/jota/v1/inference";

/** What a pool needs to call the stub serving: Info with free slots and a context, CountTokens by message. */
export const servingBasics: Partial<InferenceServer> = {
  info: (_call, cb) => cb(null, InferenceInfo.fromPartial({ slotsTotal: 4, queueMax: 8, ready: true, chatModel: { contextSize: 1024 } })),
  countTokens: (call, cb) => cb(null, { tokens: 5 * call.request.messages.length, contextSize: 1024 }),
};

/** Starts the stub on a free port; `auth` collects each Watch's authorization header. */
export async function stubEngine(impl: Partial<InferenceServer>, auth: string[] = []): Promise<{ address: string; stop: () => void }> {
  const server = new Server();
  const health: HealthServer = {
    check: (_call, cb) => cb(null, { status: HealthCheckResponse_ServingStatus.SERVING }),
    watch: (call) => {
      auth.push(`Watch ${call.metadata.get("authorization")[0] ?? "(none)"}`);
      call.write({ status: HealthCheckResponse_ServingStatus.SERVING });
    },
  };
  server.addService(HealthService, health);
  server.addService(InferenceService, impl as InferenceServer);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { address: `127.0.0.1:${port}`, stop: () => server.forceShutdown() };
}
