// The official `openai` SDK pointed at a test gateway, as an OpenAI user
// would configure it (base URL + API key), with retries off so a test sees
// each response as the server sent it.
import OpenAI from "openai";
import type { Stack } from "../../src/stack";

export function openaiClient(t: { url: string }, apiKey: string): OpenAI {
  return new OpenAI({ baseURL: `${t.url}/v1`, apiKey, maxRetries: 0, timeout: 120_000 });
}

/** The model names the engines report about themselves (Info), independent of /v1/models. */
export async function engineModels(stack: Stack): Promise<{ chat: string; embedding: string; transcription: string | undefined }> {
  const info = await stack.pool.inference[0]!.client.info();
  const t = stack.pool.transcription[0] ? await stack.pool.transcription[0].client.info() : undefined;
  return { chat: info.chatModel!.name, embedding: info.embeddingModel!.name, transcription: t?.modelName };
}

export async function waitUntil<T>(probe: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
}
