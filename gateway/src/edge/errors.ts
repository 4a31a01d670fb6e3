// Jota's errors as gRPC statuses. The edge service refuses with the same
// causes as the REST API (one ApiError per cause, from toApiError), so a
// device and a web client hear the same reason for the same mistake; the
// status code is the gRPC one for that HTTP status, and the trailing metadata
// carries Jota's own code (`jota-error-code`) and, for limits, `retry-after`.
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { ApiError, toApiError, type ErrorCode } from "../http/errors";

const BY_HTTP: Record<number, status> = {
  400: status.INVALID_ARGUMENT,
  401: status.UNAUTHENTICATED,
  403: status.PERMISSION_DENIED,
  404: status.NOT_FOUND,
  // Conflicts in gRPC's sense: "retry at a higher level" (e.g. a busy conversation).
  409: status.ABORTED,
  413: status.RESOURCE_EXHAUSTED,
  415: status.INVALID_ARGUMENT,
  429: status.RESOURCE_EXHAUSTED,
  503: status.UNAVAILABLE,
};

/** An error the edge service ends a call with, already in gRPC terms. */
export class EdgeError extends Error {
  constructor(
    readonly code: status,
    readonly jotaCode: ErrorCode | "unavailable",
    message: string,
  ) {
    super(message);
    this.name = "EdgeError";
  }

  /** A device's protocol or input error: Jota's validation_error, as on the REST API. */
  static invalid(message: string): EdgeError {
    return new EdgeError(status.INVALID_ARGUMENT, "validation_error", message);
  }
}

/** Any error as the status a call ends with. Unknown errors are INTERNAL without their message. */
export function toServiceError(err: unknown): Partial<ServiceError> & { code: status; details: string; jotaCode: string } {
  const metadata = new Metadata();
  if (err instanceof EdgeError) {
    metadata.set("jota-error-code", err.jotaCode);
    return { code: err.code, details: err.message, metadata, jotaCode: err.jotaCode };
  }
  const e: ApiError = toApiError(err);
  metadata.set("jota-error-code", e.code);
  const retry = e.headers["Retry-After"];
  if (retry) metadata.set("retry-after", retry);
  return { code: BY_HTTP[e.status] ?? status.INTERNAL, details: e.message, metadata, jotaCode: e.code };
}
