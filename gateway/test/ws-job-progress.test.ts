// Ingest jobs watched over the chat socket (watch_job / unwatch_job), end to
// end with real parts: the gateway's private Redis and in-process ingest
// worker, the engine's embedding model, pgvector on PGlite. A watch answers
// at once with the job's status, then sends every change in order until the
// job ends; another user's job and an unknown one are the same not_found; a
// job that disappears ends its watch; unwatch stops the frames; a slow reader
// gets the latest status instead of every one; the watches per socket are
// limited and end with the socket; without Redis, watches are
// jobs_unavailable.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { markdownDocument } from "../../control-plane/test/helpers/documents";
import { attachWebSockets, type WebSockets } from "../src/ws/server";
import { api, startTestGateway, type TestGateway, type TestUser, until } from "./helpers/gateway";
import { connect, type Frame, type WsClient } from "./helpers/ws-client";

const STATES = ["waiting", "active", "completed"];
const PHASES = ["tokenize", "embed", "store"];
const FINAL = ["completed", "failed"];

const jobFrames = (c: WsClient, jobId: string) => c.frames.filter((f) => f.type === "job" && f.job_id === jobId);
/** The frame that ends a watch: a final state, or an error about the job. */
const endOfWatch = (c: WsClient, jobId: string, ms = 50_000) =>
  c.waitFor((f) => f.job_id === jobId && (f.type === "error" || (f.type === "job" && FINAL.includes(f.job.state))), `the end of the watch of ${jobId}`, ms);

let pings = 0;
/** A ping's pong: every frame the server sent before it has arrived. */
async function roundTrip(c: WsClient): Promise<void> {
  const id = `rt-${++pings}`;
  c.send({ type: "ping", id });
  await c.waitFor((f) => f.type === "pong" && f.id === id, `pong ${id}`);
}

/** A job's frames are in order: waiting, active, completed; phases tokenize, embed, store; `done` never goes back within a phase; each frame is a change. */
function assertInOrder(frames: Frame[], what: string) {
  let state = 0;
  let phase = -1;
  let done = -1;
  let total = -1;
  for (const [i, f] of frames.entries()) {
    const at = `${what}, frame ${i}: ${JSON.stringify(f.job)}`;
    const s = STATES.indexOf(f.job.state);
    assert.ok(s >= state, `state goes forward (${at})`);
    state = s;
    const p = f.job.progress;
    if (!p) {
      assert.equal(phase, -1, `progress, once reported, stays (${at})`);
      continue;
    }
    const ph = PHASES.indexOf(p.phase);
    assert.ok(ph >= phase, `phases go forward (${at})`);
    if (ph === phase) {
      assert.ok(p.done >= done, `done does not go back within a phase (${at})`);
      // (tokenize's total grows as the text is split into more pieces; the chunks to embed and store are known)
      if (p.phase !== "tokenize") assert.equal(p.total, total, `a phase's total stays (${at})`);
    }
    assert.ok(p.done <= p.total, at);
    [phase, done, total] = [ph, p.done, p.total];
    if (i > 0) assert.notDeepEqual(f.job, frames[i - 1]!.job, `a frame is sent only for a change (${at})`);
  }
}

/** A second WebSocket endpoint on the same gateway context, with its own options. */
async function extraEndpoint(ctx: TestGateway["gw"]["ctx"], opts: Parameters<typeof attachWebSockets>[2]): Promise<{ url: string; sockets: WebSockets; close(): Promise<void> }> {
  const server = http.createServer();
  const sockets: WebSockets = attachWebSockets(server, ctx, opts);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    sockets,
    close: async () => {
      await sockets.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe("ws: watching ingest jobs", function () {
  this.timeout(90_000);
  let t: TestGateway;
  let u: TestUser;
  let other: TestUser;
  let doc = 0;
  before(async () => {
    t = await startTestGateway();
    u = await t.user("ws-jobs");
    other = await t.user("ws-jobs-other");
  });
  after(() => t?.close());

  /** Uploads a fresh multi-chunk Markdown document (~120 KB: a few hundred chunks, a few seconds of ingestion). */
  async function upload(key = u.key): Promise<{ jobId: string; documentId: string }> {
    const n = ++doc;
    const up = await api(t, key, "POST", "/api/v1/documents", { source: `watched-${n}.md`, text: markdownDocument(120_000, 100 + n) });
    assert.equal(up.status, 202, up.text.slice(0, 300));
    return { jobId: up.json.job.id, documentId: up.json.document.id };
  }

  it("a watch answers at once, then every change in order, and ends with completed and the document's chunks", async () => {
    // With one job at a time, the second upload waits behind the first: its watch sees it from the start.
    const first = await upload();
    const watched = await upload();
    const c = await connect(t, u.userId, u.key);
    const c2 = await connect(t, u.userId, u.key);
    c.send({ type: "watch_job", id: "w1", job_id: watched.jobId });
    c.send({ type: "watch_job", job_id: first.jobId });
    c2.send({ type: "watch_job", id: 9, job_id: watched.jobId });

    const answer = await c.waitFor((f) => f.job_id === watched.jobId, "the answer to watch_job");
    assert.equal(answer.type, "job", JSON.stringify(answer));
    assert.equal(answer.id, "w1");
    assert.deepEqual(Object.keys(answer.job).sort(), ["attempts_made", "created_at", "failed_reason", "finished_at", "id", "progress", "result", "source", "state"]);
    assert.equal(answer.job.id, watched.jobId);
    assert.equal(answer.job.source, `watched-${doc}.md`);
    assert.equal(answer.job.state, "waiting", "the job waits behind the first upload");
    assert.equal(answer.job.progress, null);

    const last = await endOfWatch(c, watched.jobId);
    const frames = jobFrames(c, watched.jobId);
    assert.equal(last, frames.at(-1), "the final state is the last frame");
    assert.equal(last.job.state, "completed", JSON.stringify(last));
    assert.ok(frames.every((f) => f.id === "w1"), "every frame of the watch carries the watch_job's id");
    assertInOrder(frames, "watched job");
    const phases = [...new Set(frames.filter((f) => f.job.progress).map((f) => f.job.progress.phase))];
    assert.deepEqual(phases, PHASES, "every phase was seen, in order");
    const embed = frames.filter((f) => f.job.progress?.phase === "embed");
    assert.ok(embed.length >= 2 && embed.some((f) => f.job.progress.done < f.job.progress.total), `progress frames mid-way (${embed.length} in embed)`);

    // The final frame is the REST job view, and its chunks are the document's.
    const chunks = last.job.result.chunks;
    assert.ok(chunks > 50, `a multi-chunk document (${chunks})`);
    assert.deepEqual(last.job.progress, { phase: "store", done: chunks, total: chunks });
    assert.equal(last.job.attempts_made, 1);
    assert.ok(last.job.finished_at);
    const rest = await api(t, u.key, "GET", `/api/v1/jobs/${encodeURIComponent(watched.jobId)}`);
    assert.deepEqual(last.job, rest.json);
    const d = await until("the document to be READY", 10_000, () => api(t, u.key, "GET", `/api/v1/documents/${watched.documentId}`), (r) => r.json?.status !== "queued");
    assert.deepEqual([d.json.status, d.json.chunks], ["ready", chunks]);

    // The other watch on the same socket (no id), and the same job on another socket, end alike.
    const firstLast = await endOfWatch(c, first.jobId);
    assert.equal(firstLast.job.state, "completed");
    assert.ok(jobFrames(c, first.jobId).every((f) => !("id" in f)));
    assertInOrder(jobFrames(c, first.jobId), "first job");
    const other = await endOfWatch(c2, watched.jobId);
    assert.deepEqual(other.job, last.job);
    assert.equal(other.id, 9);
    assertInOrder(jobFrames(c2, watched.jobId), "second socket");

    // A watch ends with its final state: nothing more comes. Watching a finished job answers once.
    await roundTrip(c);
    const before = c.frames.length;
    c.send({ type: "watch_job", id: "again", job_id: watched.jobId });
    const again = await c.waitFor((f) => f.id === "again", "the answer to watching a finished job");
    assert.deepEqual([again.type, again.job], ["job", last.job]);
    await roundTrip(c);
    assert.deepEqual(
      c.frames.slice(before).map((f) => f.type),
      ["job", "pong"],
    );
    c.close();
    c2.close();
  });

  it("another user's job and an unknown job are the same not_found; the socket keeps working", async () => {
    const { jobId } = await upload();
    const theirs = await connect(t, other.userId, other.key);
    theirs.send({ type: "watch_job", id: "x", job_id: jobId });
    const err = await theirs.waitFor((f) => f.id === "x", "the answer to another user's job");
    assert.deepEqual([err.type, err.code, err.job_id, err.details], ["error", "not_found", jobId, { job: jobId }]);
    await roundTrip(theirs);
    assert.equal(theirs.ws.readyState, theirs.ws.OPEN);

    const c = await connect(t, u.userId, u.key);
    for (const unknown of [`ingest:${u.userId}:${"0".repeat(32)}`, `ingest:${other.userId}:${"0".repeat(32)}`, "nope"]) {
      c.send({ type: "watch_job", id: unknown, job_id: unknown });
      const e = await c.waitFor((f) => f.id === unknown, `the answer for ${unknown}`);
      // The same answer as for a job that exists but is not theirs, the id aside.
      assert.deepEqual({ ...e, id: "x", job_id: jobId, message: e.message.replace(unknown, jobId), details: { job: jobId } }, err);
      assert.deepEqual(e.details, { job: unknown });
    }
    await roundTrip(c);
    // The job itself is watched as usual meanwhile.
    c.send({ type: "watch_job", job_id: jobId });
    assert.equal((await endOfWatch(c, jobId)).job.state, "completed");
    // The other user never got a frame of it.
    await roundTrip(theirs);
    assert.deepEqual(theirs.frames.filter((f) => f.job_id === jobId && f.type !== "error"), []);

    // Bad frames and a key without the memory scope (the REST job status needs it too).
    c.send({ type: "watch_job", id: "v1" });
    const v = await c.waitFor((f) => f.id === "v1", "validation error");
    assert.deepEqual([v.code, v.details.field], ["validation_error", "job_id"]);
    c.send({ type: "unwatch_job", id: "v2", job_id: jobId, extra: 1 });
    assert.deepEqual((await c.waitFor((f) => f.id === "v2", "validation error")).details.field, "extra");
    const chatOnly = await t.user("ws-jobs-chat-only", ["chat"]);
    const co = await connect(t, chatOnly.userId, chatOnly.key);
    co.send({ type: "watch_job", id: "s", job_id: jobId });
    const forbidden = await co.waitFor((f) => f.id === "s", "forbidden");
    assert.deepEqual([forbidden.type, forbidden.code, forbidden.job_id], ["error", "forbidden", jobId]);
    await roundTrip(co);
    c.close();
    theirs.close();
    co.close();
  });

  it("a watched job that disappears (its document deleted while it waits) ends the watch with not_found", async () => {
    const blocker = await upload();
    const victim = await upload();
    const c = await connect(t, u.userId, u.key);
    c.send({ type: "watch_job", id: "v", job_id: victim.jobId });
    const answer = await c.waitFor((f) => f.job_id === victim.jobId, "the answer");
    assert.deepEqual([answer.type, answer.job.state], ["job", "waiting"]);
    assert.equal((await api(t, u.key, "DELETE", `/api/v1/documents/${victim.documentId}`)).status, 204);
    const gone = await endOfWatch(c, victim.jobId, 10_000);
    assert.deepEqual([gone.type, gone.code, gone.id, gone.details], ["error", "not_found", "v", { job: victim.jobId }]);
    assert.match(gone.message, /no longer exists/);
    c.send({ type: "watch_job", job_id: blocker.jobId });
    assert.equal((await endOfWatch(c, blocker.jobId)).job.state, "completed");
    c.close();
  });

  it("unwatch_job stops the frames (another socket's watch of the job goes on)", async () => {
    const { jobId } = await upload();
    const c = await connect(t, u.userId, u.key);
    const keeps = await connect(t, u.userId, u.key);
    keeps.send({ type: "watch_job", job_id: jobId });
    c.send({ type: "watch_job", job_id: jobId });
    await c.waitFor((f) => f.job_id === jobId, "the first frame");
    c.send({ type: "unwatch_job", job_id: jobId });
    await roundTrip(c);
    const seen = jobFrames(c, jobId);
    assert.ok(!seen.some((f) => FINAL.includes(f.job.state)), "unwatched before the job ended");

    const last = await endOfWatch(keeps, jobId);
    assert.equal(last.job.state, "completed");
    assert.ok(jobFrames(keeps, jobId).length > seen.length, "the job changed after the unwatch");
    await roundTrip(c);
    assert.deepEqual(jobFrames(c, jobId), seen, "no frame after the unwatch");
    // Unwatching what is not watched is not an error.
    c.send({ type: "unwatch_job", job_id: jobId });
    await roundTrip(c);
    assert.deepEqual(c.frames.filter((f) => f.type === "error"), []);
    c.close();
    keeps.close();
  });

  it("a slow reader gets the latest status, not every one; watches per socket are limited; closing the socket ends its watches", async () => {
    // An endpoint whose every frame waits (high water mark 0) and goes out once a second: a reader that slow.
    const slow = await extraEndpoint(t.gw.ctx, { highWaterBytes: 0, lowWaterBytes: 0, pollMs: 1000, maxJobWatches: 2 });
    try {
      const first = await upload();
      const watched = await upload();
      const s = await connect(slow, u.userId, u.key);
      const fast = await connect(t, u.userId, u.key);
      fast.send({ type: "watch_job", job_id: watched.jobId });
      s.send({ type: "watch_job", job_id: watched.jobId });
      s.send({ type: "watch_job", job_id: first.jobId });
      const unknown = `ingest:${u.userId}:${"f".repeat(32)}`;
      s.send({ type: "watch_job", id: "third", job_id: unknown });
      const tooMany = await s.waitFor((f) => f.id === "third", "the third watch's answer");
      assert.deepEqual([tooMany.type, tooMany.code, tooMany.job_id, tooMany.details], ["error", "too_many_watches", unknown, { limit: 2 }]);
      // Unwatching frees a place.
      s.send({ type: "unwatch_job", job_id: first.jobId });
      s.send({ type: "watch_job", id: "fourth", job_id: unknown });
      assert.equal((await s.waitFor((f) => f.id === "fourth", "the fourth watch's answer")).code, "not_found");
      assert.equal(slow.sockets.watchedJobs(), 1, "s watches one job now");

      // A socket that closes while its job runs: its watch ends with it.
      const s2 = await connect(slow, u.userId, u.key);
      s2.send({ type: "watch_job", job_id: watched.jobId });
      await s2.waitFor((f) => f.job_id === watched.jobId, "s2's first frame");
      assert.equal(slow.sockets.watchedJobs(), 2);
      s2.close();
      await s2.closed;
      await until("s2's watch to end", 5000, async () => slow.sockets.watchedJobs(), (n) => n === 1);

      const [slowLast, fastLast] = await Promise.all([endOfWatch(s, watched.jobId), endOfWatch(fast, watched.jobId)]);
      assert.deepEqual(slowLast.job, fastLast.job);
      assert.equal(slowLast.job.state, "completed");
      const slowFrames = jobFrames(s, watched.jobId);
      const fastFrames = jobFrames(fast, watched.jobId);
      assertInOrder(slowFrames, "slow reader");
      assertInOrder(fastFrames, "fast reader");
      assert.ok(slowFrames.length < fastFrames.length, `the slow reader got fewer frames (${slowFrames.length}) than the fast one (${fastFrames.length})`);
      assert.ok(!jobFrames(s2, watched.jobId).some((f) => FINAL.includes(f.job.state)), "s2 closed before the job ended");
      assert.equal(slow.sockets.watchedJobs(), 0, "a watch that has sent its final state is over");
      s.close();
      fast.close();
    } finally {
      await slow.close();
    }
  });

  it("without the job queue, watch_job answers jobs_unavailable and the socket stays open", async () => {
    const noJobs = await extraEndpoint({ ...t.gw.ctx, stack: { ...t.stack, jobs: undefined } }, {});
    try {
      const c = await connect(noJobs, u.userId, u.key);
      const jobId = `ingest:${u.userId}:${"1".repeat(32)}`;
      c.send({ type: "watch_job", id: "nj", job_id: jobId });
      const e = await c.waitFor((f) => f.id === "nj", "jobs_unavailable");
      assert.deepEqual([e.type, e.code, e.job_id], ["error", "jobs_unavailable", jobId]);
      await roundTrip(c);
      c.close();
    } finally {
      await noJobs.close();
    }
  });
});
