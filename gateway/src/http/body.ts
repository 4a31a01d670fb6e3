// JSON bodies: size-limited (413 beyond JOTA_MAX_BODY_BYTES), strict (an
// object or array at the top), and valid UTF-8: body-parser would quietly
// turn invalid bytes into U+FFFD and store mangled text, so they are a 400.
import express, { type RequestHandler } from "express";
import { ApiError } from "./errors";

const utf8 = new TextDecoder("utf-8", { fatal: true });

export function jsonBody(limitBytes: number): RequestHandler {
  return express.json({
    limit: limitBytes,
    strict: true,
    verify: (_req, _res, buf) => {
      try {
        utf8.decode(buf);
      } catch {
        throw new ApiError(400, "validation_error", "the request body is not valid UTF-8", { field: "(body)" });
      }
    },
  });
}
