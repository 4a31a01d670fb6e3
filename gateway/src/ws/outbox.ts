// What a socket sends, with backpressure. A reader slower than the engine
// must neither slow the turn (the runner drives it regardless) nor make the
// server buffer without bound, and must still get every token. So:
//   - while the socket's unsent bytes (ws.bufferedAmount) stay under the high
//     water mark, every frame is written as it comes;
//   - past it, frames wait in order, and each turn's waiting tokens are merged
//     into one token frame (text concatenated, index of the first, `count`
//     deltas), and a watched job's waiting `job` frame is replaced by its
//     newer status (a status is a snapshot: only the latest one matters),
//     so what waits is one frame per turn and per watched job plus the few
//     others;
//   - once the reader has drained the socket below the low water mark, the
//     whole queue is written at once.
// No token is ever dropped; what waits is bounded by the turns' own replies
// and the socket's watches.
// The owner pauses reading the client's frames while frames wait (onCongestion),
// so a client that sends without reading cannot grow the queue with replies.
import { WebSocket } from "ws";
import type { JobFrame, ServerFrame, ServerFrameType, TokenFrame } from "./frames";

export interface OutboxOptions {
  /** Unsent bytes past which tokens are coalesced (default 64 KiB). */
  highWaterBytes: number;
  /** Unsent bytes at or under which the waiting frames go out (default 16 KiB). */
  lowWaterBytes: number;
  /** How often a congested socket is checked for room (default 20 ms). */
  pollMs: number;
}

export const DEFAULT_OUTBOX: OutboxOptions = { highWaterBytes: 64 << 10, lowWaterBytes: 16 << 10, pollMs: 20 };

export class Outbox {
  private queue: ServerFrame[] = [];
  /** Per turn, its token frame still at the queue's tail side that later tokens merge into. */
  private readonly open = new Map<string, TokenFrame>();
  /** Per job, where its waiting job frame is in the queue, for a newer status to take its place (the queue only grows until it is written). */
  private readonly jobSlots = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  /** Set when the kernel took a write: the heartbeat's evidence that a paused peer still reads. */
  progressed = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly opts: OutboxOptions,
    private readonly onSent: (type: ServerFrameType) => void,
    private readonly onCongestion: (congested: boolean) => void,
  ) {}

  get congested(): boolean {
    return this.queue.length > 0;
  }

  send(frame: ServerFrame): void {
    if (this.hasRoom()) return this.write(frame);
    // Tokens of this turn that come after this frame must not be merged into a batch before it.
    if ("request_id" in frame && frame.request_id) this.open.delete(frame.request_id);
    // Nor may a later status of this job take the place of one before it (an error ending a watch, say).
    if ("job_id" in frame && frame.job_id) this.jobSlots.delete(frame.job_id);
    this.enqueue(frame);
  }

  token(requestId: string, index: number, text: string): void {
    if (this.hasRoom()) return this.write({ type: "token", request_id: requestId, index, text, count: 1 });
    const batch = this.open.get(requestId);
    if (batch) {
      batch.text += text;
      batch.count += 1;
      return;
    }
    const f: TokenFrame = { type: "token", request_id: requestId, index, text, count: 1 };
    this.open.set(requestId, f);
    this.enqueue(f);
  }

  /**
   * A job's status, which supersedes the ones before it: written at once
   * while there is room; past the high water mark it waits, and a newer
   * status of the same job takes its place in the queue, so at most one
   * frame per job waits, the latest.
   */
  job(frame: JobFrame): void {
    if (this.hasRoom()) return this.write(frame);
    const at = this.jobSlots.get(frame.job_id);
    if (at !== undefined) {
      this.queue[at] = frame;
      return;
    }
    this.jobSlots.set(frame.job_id, this.queue.length);
    this.enqueue(frame);
  }

  /** The socket closed: nothing more goes out. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.queue = [];
    this.open.clear();
    this.jobSlots.clear();
  }

  private hasRoom(): boolean {
    return this.queue.length === 0 && this.ws.bufferedAmount < this.opts.highWaterBytes;
  }

  private enqueue(f: ServerFrame) {
    this.queue.push(f);
    if (this.timer) return;
    this.timer = setInterval(() => this.drain(), this.opts.pollMs);
    this.onCongestion(true);
  }

  private drain() {
    if (this.ws.readyState !== WebSocket.OPEN) return this.close();
    if (this.ws.bufferedAmount > this.opts.lowWaterBytes) return;
    const frames = this.queue;
    this.queue = [];
    this.open.clear();
    this.jobSlots.clear();
    clearInterval(this.timer);
    this.timer = undefined;
    for (const f of frames) this.write(f);
    this.onCongestion(false);
  }

  private write(f: ServerFrame) {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify(f), (err) => {
      if (!err) this.progressed = true;
    });
    this.onSent(f.type);
  }
}
