// POST /v1/audio/transcriptions: a whole audio file, transcribed by a
// transcription engine (Transcribe), in OpenAI's multipart form.
//
// The form: `file` (a WAV file: PCM 8/16/24/32-bit or float, any rate and up
// to 8 channels; other containers such as mp3 are refused by the engine with
// a 400), `model` ("jota" or the engine's model id), and optionally
// `language` (ISO-639-1; absent: detected), `prompt` (whisper's initial
// prompt) and `response_format`:
//   json          { "text" }
//   text          the text alone (text/plain)
//   verbose_json  { task, language, duration, text, segments: [{ id, start, end, text, no_speech_prob, confidence }] }
//                 (whisper's seek / tokens / avg_logprob are not reported by the engine, so they are left out, not made up)
//   srt           SubRip cues, "HH:MM:SS,mmm --> HH:MM:SS,mmm"
//   vtt           WebVTT cues, "HH:MM:SS.mmm --> HH:MM:SS.mmm"
// `temperature` and `chunking_strategy` are accepted and ignored (the engine
// decodes greedily and chunks by itself); word timestamps, `stream=true`,
// `include[]=logprobs` and any field OpenAI does not define are refused
// with the field named. The file is held in memory, at most
// JOTA_MAX_AUDIO_BYTES (413 beyond). A client that disconnects cancels the
// engine's decoding.
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { Router, type NextFunction, type Request, type RequestHandler, type Response } from "express";
import multer from "multer";
import { z } from "zod";
import { TranscribeRequest, type Segment, type TranscribeResponse } from "@jota/control-plane/gen/jota/v1/transcription";
import type { GatewayContext } from "../context";
import { mount, type RouteSpec } from "../api/schemas";
import { OpenAIError } from "./errors";
import type { ModelCatalog } from "./models";
import { parse } from "./validate";

/** Long files take long to decode; a client that stops waiting cancels sooner. */
const TRANSCRIBE_DEADLINE_MS = 30 * 60_000;

const oneOrMany = z.union([z.string(), z.array(z.string())]);
const many = (v: string | string[] | undefined) => (v === undefined ? [] : typeof v === "string" ? [v] : v);

const audioFields = z
  .object({
    model: z.string().min(1),
    language: z.string().optional(),
    prompt: z.string().optional(),
    response_format: z.enum(["json", "text", "srt", "verbose_json", "vtt"]).optional(),
    temperature: z
      .string()
      .refine((s) => s.trim() !== "" && Number.isFinite(Number(s)) && Number(s) >= 0 && Number(s) <= 1, "must be a number within [0, 1]")
      .optional(),
    timestamp_granularities: oneOrMany.optional(),
    stream: z.enum(["true", "false"]).optional(),
    include: oneOrMany.optional(),
    chunking_strategy: z.string().optional(),
  })
  .strict();

/**
 * The whole form as the document shows it: the fields the handler checks
 * (audioFields) and the file, which multer takes out of the form before.
 */
const audioForm = audioFields
  .extend({
    file: z.string().meta({ format: "binary", contentMediaType: "audio/wav", description: "The audio: a WAV file (PCM 8/16/24/32-bit or float, any rate, up to 8 channels), at most JOTA_MAX_AUDIO_BYTES." }),
  })
  .meta({
    id: "OpenAITranscriptionForm",
    description:
      "model: jota or the transcription engine's model id; language: ISO-639-1 (absent: detected); prompt: whisper's initial prompt. temperature and chunking_strategy are accepted and ignored; timestamp_granularities other than segment, stream=true and include[] are refused.",
  });

const AudioUsage = z.object({ type: z.literal("duration"), seconds: z.number().int().meta({ description: "The audio's length, rounded up." }) }).strict();

export const Transcription = z.object({ text: z.string(), usage: AudioUsage }).strict().meta({ id: "OpenAITranscription" });

export const VerboseTranscription = z
  .object({
    task: z.literal("transcribe"),
    language: z.string(),
    duration: z.number().meta({ description: "Seconds." }),
    text: z.string(),
    segments: z.array(
      z
        .object({
          id: z.number().int(),
          start: z.number(),
          end: z.number(),
          text: z.string(),
          no_speech_prob: z.number(),
          confidence: z.number(),
        })
        .strict(),
    ),
    usage: AudioUsage,
  })
  .strict()
  .meta({ id: "OpenAIVerboseTranscription", description: "response_format verbose_json (whisper's seek, tokens and avg_logprob are not reported)." });

export const audioRoutes = {
  transcribe: {
    method: "post",
    path: "/audio/transcriptions",
    operationId: "createTranscription",
    summary: "Transcribe a whole audio file",
    description: "A client that disconnects cancels the engine's decoding.",
    tags: ["openai"],
    auth: "audio",
    body: audioForm,
    bodyContentType: "multipart/form-data",
    responses: {
      200: {
        description: "The transcript, in the response_format asked for: json (default) and verbose_json as JSON, text as text/plain, srt as SubRip, vtt as WebVTT.",
        schema: z.union([Transcription, VerboseTranscription]),
        alternatives: { "text/plain": z.string(), "application/x-subrip": z.string(), "text/vtt": z.string() },
      },
    },
    errors: [404, 500, 503],
  },
} satisfies Record<string, RouteSpec>;

/** multer's errors as the 400 / 413 a client can act on. */
function upload(maxBytes: number): RequestHandler {
  const single = multer({ storage: multer.memoryStorage(), limits: { fileSize: maxBytes, files: 1, fields: 16, fieldSize: 64 << 10, parts: 24 } }).single("file");
  return (req: Request, res: Response, next: NextFunction) =>
    single(req, res, (err?: unknown) => {
      if (!err) return next();
      if (err instanceof multer.MulterError) {
        switch (err.code) {
          case "LIMIT_FILE_SIZE":
            return next(new OpenAIError(413, "invalid_request_error", "payload_too_large", `the file is larger than ${maxBytes} bytes (JOTA_MAX_AUDIO_BYTES)`, "file"));
          case "LIMIT_UNEXPECTED_FILE":
            return next(OpenAIError.invalid(err.field ?? null, "unknown_parameter", `a file in field '${err.field}': send one audio file, as the field 'file'`));
          case "LIMIT_FIELD_VALUE":
            return next(OpenAIError.invalid(err.field ?? null, "invalid_value", `${err.field}: the value is longer than 64 KiB`));
          default:
            return next(OpenAIError.invalid(err.field ?? null, "invalid_value", `the form is not acceptable: ${err.message}`));
        }
      }
      next(OpenAIError.invalid(null, "invalid_multipart", `the multipart body is malformed: ${(err as Error)?.message ?? String(err)}`));
    });
}

/** Seconds as "HH:MM:SS<sep>mmm" (SRT uses ',', WebVTT '.'). */
export function timestamp(seconds: number, sep: "," | "."): string {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(Math.floor(ms / 3_600_000))}:${p(Math.floor(ms / 60_000) % 60)}:${p(Math.floor(ms / 1000) % 60)}${sep}${p(ms % 1000, 3)}`;
}

export function srt(segments: Segment[]): string {
  return segments.map((s, i) => `${i + 1}\n${timestamp(s.startS, ",")} --> ${timestamp(s.endS, ",")}\n${s.text.trim()}\n\n`).join("");
}

export function vtt(segments: Segment[]): string {
  return `WEBVTT\n\n${segments.map((s) => `${timestamp(s.startS, ".")} --> ${timestamp(s.endS, ".")}\n${s.text.trim()}\n\n`).join("")}`;
}

/** The engine's refusal, on the form field it is about. */
function transcribeFailure(err: ServiceError, address: string): OpenAIError {
  const detail = err.details || err.message;
  if (err.code === status.INVALID_ARGUMENT || err.code === status.OUT_OF_RANGE) {
    if (/language/.test(detail)) return OpenAIError.invalid("language", "invalid_value", detail);
    if (/initial_prompt/.test(detail)) return OpenAIError.invalid("prompt", "invalid_value", detail.replace("initial_prompt", "prompt"));
    return OpenAIError.invalid("file", "invalid_value", `the file is not audio Jota can transcribe: ${detail}`);
  }
  if (err.code === status.UNAVAILABLE || err.code === status.RESOURCE_EXHAUSTED)
    return new OpenAIError(503, "server_error", "engine_unavailable", `transcription engine ${address}: ${detail}`, null, { "Retry-After": "5" });
  if (err.code === status.DEADLINE_EXCEEDED) return new OpenAIError(503, "server_error", "timeout", `transcription engine ${address} did not finish in time`);
  return new OpenAIError(500, "server_error", "engine_error", `transcription engine ${address} failed: ${status[err.code] ?? err.code}: ${detail}`);
}

/**
 * Watches for the client going away from before the upload is read: a
 * listener added once the engine call exists would miss a client that left
 * while the form was parsed or an engine chosen, and the engine would decode
 * the whole file for nobody.
 */
function watchClient(_req: Request, res: Response, next: NextFunction): void {
  const gone = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) gone.abort();
  });
  res.locals.clientGone = gone.signal;
  next();
}

export function audioRouter(ctx: GatewayContext, catalog: ModelCatalog): Router {
  const r = Router();
  mount(r, audioRoutes.transcribe, watchClient, upload(ctx.config.gateway.maxAudioBytes), async (req, res) => {
    const gone = res.locals.clientGone as AbortSignal;
    if (!req.is("multipart/form-data"))
      throw new OpenAIError(415, "invalid_request_error", "unsupported_media_type", "send the audio as multipart/form-data with the field 'file'");
    const f = parse(audioFields, { ...req.body });
    if (!req.file) throw OpenAIError.invalid("file", "missing_required_parameter", "Missing required parameter: 'file'");
    if (many(f.timestamp_granularities).some((g) => g !== "segment"))
      throw OpenAIError.unsupported("timestamp_granularities", "only segment timestamps are supported", "unsupported_value");
    if (f.stream === "true") throw OpenAIError.unsupported("stream", "streamed transcription is served by Jota's WebSocket and gRPC APIs, not here", "unsupported_value");
    if (many(f.include).length > 0) throw OpenAIError.unsupported("include", "include (logprobs) is not supported");

    const serving = new Set(await catalog.engines("transcription", f.model));
    if (gone.aborted) return; // nobody to answer: the engine is not asked
    if (serving.size === 0) throw new OpenAIError(503, "server_error", "engine_unavailable", "no transcription engine is serving now", null, { "Retry-After": "5" });
    const pool = ctx.stack.pool;
    const lease = pool.pickTranscription({ exclude: pool.transcription.map((e) => e.address).filter((a) => !serving.has(a)) });
    const request = TranscribeRequest.fromPartial({
      audio: { $case: "wav", value: req.file.buffer },
      language: f.language ?? "",
      initialPrompt: f.prompt ?? "",
      requestId: String(res.locals.requestId ?? ""),
    });
    let out: TranscribeResponse;
    try {
      out = await new Promise<TranscribeResponse>((resolve, reject) => {
        const call = lease.client.raw.transcribe(request, new Metadata(), { deadline: Date.now() + TRANSCRIBE_DEADLINE_MS }, (err, reply) =>
          err ? reject(err) : resolve(reply),
        );
        gone.addEventListener("abort", () => call.cancel(), { once: true });
      });
      lease.release();
    } catch (err) {
      lease.release(err);
      if (res.destroyed) return; // the client left; the engine has stopped
      throw transcribeFailure(err as ServiceError, lease.address);
    }

    const text = out.text.trim();
    const usage = { type: "duration" as const, seconds: Math.ceil(out.durationS) };
    switch (f.response_format ?? "json") {
      case "json":
        res.json({ text, usage } satisfies z.output<typeof Transcription>);
        return;
      case "text":
        res.type("text/plain; charset=utf-8").send(text);
        return;
      case "srt":
        res.type("application/x-subrip; charset=utf-8").send(srt(out.segments));
        return;
      case "vtt":
        res.type("text/vtt; charset=utf-8").send(vtt(out.segments));
        return;
      case "verbose_json":
        res.json({
          task: "transcribe",
          language: out.language,
          duration: out.durationS,
          text,
          segments: out.segments.map((s, id) => ({ id, start: s.startS, end: s.endS, text: s.text, no_speech_prob: s.noSpeechProb, confidence: s.confidence })),
          usage,
        } satisfies z.output<typeof VerboseTranscription>);
        return;
    }
  });
  return r;
}
