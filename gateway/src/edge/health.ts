// grpc.health.v1 for the edge port: "" (the server) and jota.v1.Assistant
// are SERVING while the server runs. Whether engines are up is /health's
// business; a device only needs to know that this port takes its calls.
// Watch streams are told NOT_SERVING and ended when the server stops, so
// they never hold its shutdown.
import { status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream } from "@grpc/grpc-js";
import {
  HealthCheckResponse_ServingStatus as Serving,
  HealthService,
  type HealthCheckRequest,
  type HealthCheckResponse,
  type HealthServer,
} from "@jota/control-plane/gen/grpc/health/v1/health";

export class EdgeHealth {
  readonly definition = HealthService;
  private readonly statuses: Map<string, Serving>;
  private readonly watchers = new Set<ServerWritableStream<HealthCheckRequest, HealthCheckResponse>>();

  constructor(services: string[]) {
    this.statuses = new Map(["", ...services].map((s) => [s, Serving.SERVING]));
  }

  readonly implementation: HealthServer = {
    check: (call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, cb: sendUnaryData<HealthCheckResponse>) => {
      const s = this.statuses.get(call.request.service);
      if (s === undefined) cb({ code: status.NOT_FOUND, details: `unknown service "${call.request.service}"` });
      else cb(null, { status: s });
    },
    watch: (call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
      call.write({ status: this.statuses.get(call.request.service) ?? Serving.SERVICE_UNKNOWN });
      this.watchers.add(call);
      call.on("cancelled", () => this.watchers.delete(call));
      call.on("error", () => this.watchers.delete(call));
    },
  };

  /** Everything NOT_SERVING; watch streams get that and end. */
  shutdown(): void {
    for (const k of this.statuses.keys()) this.statuses.set(k, Serving.NOT_SERVING);
    for (const w of this.watchers) {
      w.write({ status: Serving.NOT_SERVING });
      w.end();
    }
    this.watchers.clear();
  }
}
