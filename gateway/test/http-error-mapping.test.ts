// Which thrown errors are the caller's fault. The body parser's own errors
// (http-errors, marked `expose`) keep their 4xx; a 4xx another library
// throws about its own upstream (the Qdrant client's 401 for a wrong
// QDRANT_API_KEY, 404 for a collection dropped behind Jota's back) is the
// server's problem: a 500, never a 401 that tells the client its key is bad.
import assert from "node:assert/strict";
import { toApiError } from "../src/http/errors";

describe("errors: what is the client's fault", () => {
  it("an upstream library's 4xx is a 500 internal_error, its message not shown", () => {
    for (const status of [400, 401, 403, 404, 409, 422, 429]) {
      const upstream = Object.assign(new Error(`Unauthorized: bad api-key (${status})`), { status, data: { status: { error: "forbidden" } } });
      const e = toApiError(upstream);
      assert.deepEqual([e.status, e.code, e.message], [500, "internal_error", "internal error"], `upstream ${status}`);
    }
  });

  it("the body parser's client errors keep their status", () => {
    // As body-parser hands them on: http-errors' createError(status, err) sets status, statusCode and expose.
    const httpError = (status: number, message: string, extra: object = {}) => Object.assign(new Error(message), { status, statusCode: status, expose: true, ...extra });
    const e = toApiError(httpError(400, "incorrect header check", { code: "Z_DATA_ERROR" }));
    assert.deepEqual([e.status, e.code], [400, "invalid_encoding"]);
    const other = toApiError(httpError(415, 'unsupported content encoding "compress"'));
    assert.deepEqual([other.status, other.code], [415, "unsupported_media_type"]);
  });
});
