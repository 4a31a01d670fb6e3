// grpc.health.v1 client helpers for the engines.
import { credentials, Metadata, type ChannelCredentials } from "@grpc/grpc-js";
import { HealthCheckResponse_ServingStatus, HealthClient } from "../gen/grpc/health/v1/health";

export type ServingStatus = "SERVING" | "NOT_SERVING" | "UNKNOWN" | "SERVICE_UNKNOWN" | "UNREACHABLE";

const NAMES: Record<number, ServingStatus> = {
  [HealthCheckResponse_ServingStatus.UNKNOWN]: "UNKNOWN",
  [HealthCheckResponse_ServingStatus.SERVING]: "SERVING",
  [HealthCheckResponse_ServingStatus.NOT_SERVING]: "NOT_SERVING",
  [HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN]: "SERVICE_UNKNOWN",
};

/** One Check call with a deadline; network failures come back as UNREACHABLE, never thrown. */
export function checkHealth(
  address: string,
  service: string,
  timeoutMs = 2000,
  creds: ChannelCredentials = credentials.createInsecure(),
): Promise<ServingStatus> {
  const client = new HealthClient(address, creds);
  return new Promise<ServingStatus>((resolve) => {
    client.check({ service }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      client.close();
      resolve(err || !res ? "UNREACHABLE" : (NAMES[res.status] ?? "UNKNOWN"));
    });
  });
}
