// A real `ws` client of the chat protocol for the ws-*.test.ts files: it
// keeps every frame it received, in order, and lets a test wait for the one
// it needs. Also: an upgrade that the server refuses, read as its HTTP status
// and JSON body; and a snapshot of what a user has stored, to prove that bad
// input changed nothing.
import WebSocket, { type ClientOptions } from "ws";
import type { Stack } from "../../src/stack";

export type Frame = Record<string, any>;

export interface Closed {
  code: number;
  reason: string;
}

export interface WsClient {
  ws: WebSocket;
  /** Every JSON frame received so far, in order. */
  frames: Frame[];
  /** The subprotocol the server chose ("" when none). */
  protocol: string;
  send(frame: unknown): void;
  /** The first frame (from the first one received) matching `pred`; waits for it up to `ms`. */
  waitFor(pred: (f: Frame) => boolean, what: string, ms?: number): Promise<Frame>;
  /** Resolves when the socket has closed. */
  closed: Promise<Closed>;
  /** Frames of one turn: its request id from the start/end/error echoing `id`, then every frame with that request id. */
  turnFrames(requestId: string): Frame[];
  close(): void;
}

export interface ConnectOptions {
  /** How the key travels (default: the Authorization header). */
  via?: "header" | "protocol" | "query";
  protocols?: string[];
  clientOptions?: ClientOptions;
  path?: string;
}

export function chatUrl(baseUrl: string, userId: string): string {
  return `${baseUrl.replace(/^http/, "ws")}/api/v1/ws/chat/${userId}`;
}

function open(baseUrl: string, userId: string, key: string | undefined, o: ConnectOptions): WebSocket {
  let url = o.path ? `${baseUrl.replace(/^http/, "ws")}${o.path}` : chatUrl(baseUrl, userId);
  const via = o.via ?? "header";
  const headers: Record<string, string> = {};
  let protocols = o.protocols;
  if (key !== undefined) {
    if (via === "header") headers.authorization = `Bearer ${key}`;
    else if (via === "protocol") protocols = [...(protocols ?? ["jota.v1"]), `bearer.${key}`];
    else url += `?access_token=${encodeURIComponent(key)}`;
  }
  return new WebSocket(url, protocols, { ...o.clientOptions, headers: { ...headers, ...o.clientOptions?.headers } });
}

export async function connect(t: { url: string }, userId: string, key: string | undefined, o: ConnectOptions = {}): Promise<WsClient> {
  const ws = open(t.url, userId, key, o);
  const frames: Frame[] = [];
  const waiters = new Set<() => void>();
  const closed = new Promise<Closed>((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on("message", (data, isBinary) => {
    if (isBinary) throw new Error("the server sent a binary frame");
    frames.push(JSON.parse(data.toString()));
    for (const w of waiters) w();
  });
  ws.on("close", () => {
    for (const w of waiters) w();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
  ws.on("error", () => {}); // close codes are what the tests check

  const waitFor = (pred: (f: Frame) => boolean, what: string, ms = 30_000) =>
    new Promise<Frame>((resolve, reject) => {
      const check = () => {
        const f = frames.find(pred);
        if (f) return done(() => resolve(f));
        if (ws.readyState === WebSocket.CLOSED) done(() => reject(new Error(`socket closed while waiting for ${what}; frames: ${JSON.stringify(frames.slice(-5))}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`timed out waiting for ${what}; last frames: ${JSON.stringify(frames.slice(-5))}`))), ms);
      const done = (fn: () => void) => {
        clearTimeout(timer);
        waiters.delete(check);
        fn();
      };
      waiters.add(check);
      check();
    });

  return {
    ws,
    frames,
    protocol: ws.protocol,
    send: (f) => ws.send(typeof f === "string" ? f : JSON.stringify(f)),
    waitFor,
    closed,
    turnFrames: (requestId) => frames.filter((f) => f.request_id === requestId),
    close: () => ws.close(),
  };
}

/** An upgrade the server refuses: its status and JSON body. */
export function refused(
  t: { url: string },
  userId: string,
  key: string | undefined,
  o: ConnectOptions = {},
): Promise<{ status: number; json: any; headers: Record<string, string | string[] | undefined> }> {
  const ws = open(t.url, userId, key, o);
  return new Promise((resolve, reject) => {
    ws.once("open", () => {
      ws.close();
      reject(new Error("the upgrade was accepted"));
    });
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => {
        let json: unknown;
        try {
          json = JSON.parse(body);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, json, headers: res.headers });
      });
    });
    ws.once("error", (err) => reject(err));
  });
}

/** Everything a user has stored that a turn would change: conversations, requests, and the messages of each conversation. */
export async function stored(stack: Stack, userId: string): Promise<{ conversations: number; requests: number; messages: number }> {
  const { repos } = stack.db;
  const convs = (await repos.conversations.list(userId, { limit: 200 })).items;
  let messages = 0;
  for (const c of convs) messages += (await repos.messages.list(userId, c.id, { limit: 200 })).items.length;
  return { conversations: convs.length, requests: (await repos.requests.list(userId, { limit: 200 })).items.length, messages };
}

/** The text of a turn's token frames, in order. */
export const tokenText = (frames: Frame[]) =>
  frames
    .filter((f) => f.type === "token")
    .map((f) => f.text as string)
    .join("");
