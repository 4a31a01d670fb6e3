// The one place that checks what an edge device sends: a Converse config
// becomes immutable ConverseSettings, an audio chunk is checked against them,
// a Chat request becomes ChatInput. Every refusal is INVALID_ARGUMENT naming
// the field and the reason, before anything is opened or stored.
import { AudioEncoding, type StreamConfig } from "@jota/control-plane/gen/jota/v1/transcription";
import type { ChatRequest, ConverseConfig } from "@jota/control-plane/gen/jota/v1/assistant";
import { EdgeError } from "./errors";

// The transcription engine's limits (engines/transcription/audio.h): refused
// here so the device hears the reason before any engine is involved.
const MIN_RATE = 8000;
const MAX_RATE = 192000;
const MAX_CHANNELS = 8;
const MAX_DEVICE_ID = 128;
/** A chat message longer than this is a client bug, not a question. */
export const MAX_TEXT_CHARS = 32_000;

export type Encoding = "pcm16le" | "float32le";

export interface ConverseSettings {
  readonly deviceId: string;
  readonly sampleRate: number;
  readonly encoding: Encoding;
  readonly channels: number;
  /** "" = detect. */
  readonly language: string;
  /** undefined: the device's current conversation (or a new one). */
  readonly conversationId: string | undefined;
  readonly bytesPerFrame: number;
}

export function converseSettings(c: ConverseConfig): ConverseSettings {
  const deviceId = checkDeviceId("config.device_id", c.deviceId);
  if (c.sampleRate === 0) throw EdgeError.invalid("config.sample_rate is required (16000 is native)");
  if (c.sampleRate < MIN_RATE || c.sampleRate > MAX_RATE)
    throw EdgeError.invalid(`config.sample_rate ${c.sampleRate} Hz is not supported (${MIN_RATE}..${MAX_RATE} Hz; 16000 is native)`);
  if (c.encoding !== "pcm16le" && c.encoding !== "float32le")
    throw EdgeError.invalid(
      c.encoding === "" ? 'config.encoding is required ("pcm16le" or "float32le")' : `config.encoding "${c.encoding}" is unknown ("pcm16le" or "float32le")`,
    );
  const channels = c.channels === 0 ? 1 : c.channels;
  if (channels < 1 || channels > MAX_CHANNELS) throw EdgeError.invalid(`config.channels ${c.channels} is not supported (1..${MAX_CHANNELS}; 0 = 1)`);
  // Whether whisper knows the language is the engine's to say (it names config.language too).
  if (c.language !== "" && !/^[a-z]{2,3}$|^auto$|^[a-z]{2,3}-[A-Za-z]{2,4}$/.test(c.language))
    throw EdgeError.invalid(`config.language "${c.language}" is not a language code (e.g. "en", "de"; "" or "auto" detects)`);
  const conversationId = c.conversationId === "" ? undefined : c.conversationId;
  return Object.freeze({
    deviceId,
    sampleRate: c.sampleRate,
    encoding: c.encoding,
    channels,
    language: c.language === "auto" ? "" : c.language.split("-")[0]!,
    conversationId,
    bytesPerFrame: (c.encoding === "pcm16le" ? 2 : 4) * channels,
  });
}

/** The transcription engine's Stream config for a device's settings. */
export function engineStreamConfig(s: ConverseSettings, requestId: string, partialIntervalMs: number): StreamConfig {
  return {
    format: {
      sampleRate: s.sampleRate,
      encoding: s.encoding === "pcm16le" ? AudioEncoding.AUDIO_ENCODING_PCM16LE : AudioEncoding.AUDIO_ENCODING_FLOAT32LE,
      channels: s.channels,
    },
    language: s.language,
    translate: false,
    initialPrompt: "",
    // A satellite streams continuously: the engine's VAD cuts it into utterances (its defaults).
    vad: { enabled: true, thresholdDb: 0, hangoverMs: 0, minSpeechMs: 0, maxUtteranceMs: 0, preRollMs: 0 },
    partialIntervalMs,
    requestId,
  };
}

const RIFF = Buffer.from("RIFF", "latin1");

/**
 * Checks one audio chunk against the settings: whole frames, raw samples (a
 * WAV file's header is a common mistake), and finite float samples. `first`:
 * the stream's first chunk, where a WAV header would be.
 */
export function checkAudio(s: ConverseSettings, chunk: Buffer, first: boolean): void {
  if (chunk.length % s.bytesPerFrame !== 0)
    throw EdgeError.invalid(
      `audio chunk of ${chunk.length} bytes is not a whole number of ${s.bytesPerFrame}-byte frames (${s.encoding}, ${s.channels} channel(s))`,
    );
  if (first && chunk.length >= 12 && chunk.subarray(0, 4).equals(RIFF) && chunk.toString("latin1", 8, 12) === "WAVE")
    throw EdgeError.invalid("audio starts with a WAV header: send raw samples in config.encoding, not a file");
  if (s.encoding === "float32le")
    for (let o = 0; o < chunk.length; o += 4) {
      const v = chunk.readFloatLE(o);
      if (!Number.isFinite(v)) throw EdgeError.invalid(`audio sample ${o / 4} of the chunk is ${v}: float32le samples must be finite (nominally -1..1)`);
    }
}

export interface ChatInput {
  readonly deviceId: string;
  readonly conversationId: string | undefined;
  readonly text: string;
}

export function chatInput(r: ChatRequest): ChatInput {
  const deviceId = checkDeviceId("device_id", r.deviceId);
  if (r.text.trim() === "") throw EdgeError.invalid("text is required (the user's message)");
  if (r.text.length > MAX_TEXT_CHARS) throw EdgeError.invalid(`text is ${r.text.length} characters (at most ${MAX_TEXT_CHARS})`);
  return Object.freeze({ deviceId, conversationId: r.conversationId === "" ? undefined : r.conversationId, text: r.text });
}

function checkDeviceId(field: string, id: string): string {
  if (id.length > MAX_DEVICE_ID) throw EdgeError.invalid(`${field} is ${id.length} characters (at most ${MAX_DEVICE_ID})`);
  if (/[\u0000-\u001f\u007f]/.test(id)) throw EdgeError.invalid(`${field} holds control characters`);
  return id;
}
