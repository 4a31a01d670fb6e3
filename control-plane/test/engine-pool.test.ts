// The engine pool against real engines (built binaries, generated test
// models): it watches health, picks by load with session affinity, fails
// over when an engine is killed and takes it back once it is restarted.
// The behaviours a real engine cannot be made to show on demand (a hung
// Info, a Generate stream to cancel) run against a stub engine.
import assert from "node:assert/strict";
import net from "node:net";
import { status, type ServerWritableStream, type ServiceError } from "@grpc/grpc-js";
import { EngineProcess, silentLogger } from "../src/index";
import { EngineCallError, InferenceEngineClient, openChannel } from "../src/engines/clients";
import { EnginePool, EngineUnavailableError, type EngineStatus } from "../src/engines/pool";
import { engineForConversation } from "../src/sessions/affinity";
import { type GenerateEvent, GenerateRequest } from "../src/gen/jota/v1/inference";
import { openDatabase, type Database } from "../src/db/database";
import { buildBin, requireFile, startEngine, testModel } from "./helpers/engines";
import { freshPgliteDir } from "./helpers/postgres-backends";
import { stubEngine } from "./helpers/stub-engine";

const FAST = { infoIntervalMs: 200, backoffInitialMs: 100, backoffMaxMs: 1000, logger: silentLogger };

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves with the first status change of `address` that satisfies `pred`. */
function changeOf(pool: EnginePool, address: string, pred: (s: EngineStatus) => boolean, timeoutMs = 30_000): Promise<EngineStatus> {
  const now = pool.status().find((s) => s.address === address);
  if (now && pred(now)) return Promise.resolve(now);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pool.off("change", on);
      reject(new Error(`${address} did not change as expected in ${timeoutMs} ms: ${JSON.stringify(pool.status())}`));
    }, timeoutMs);
    const on = (s: EngineStatus) => {
      if (s.address !== address || !pred(s)) return;
      clearTimeout(timer);
      pool.off("change", on);
      resolve(s);
    };
    pool.on("change", on);
  });
}
const serving = (s: EngineStatus) => s.health === "serving";

describe("engine pool (real engines)", function () {
  this.timeout(120_000);
  const token = "pool-token-" + Math.random().toString(36).slice(2);
  let a: EngineProcess; // restarted by its supervisor, on the same port
  let b: EngineProcess;
  let stt: EngineProcess;
  let aAddr: string;
  let pool: EnginePool;
  let db: Database;

  before(async () => {
    const port = await freePort();
    a = new EngineProcess({
      name: "inference-a",
      binary: requireFile(buildBin("jota-inference")),
      args: ["--listen", `127.0.0.1:${port}`, "--model", requireFile(testModel("tiny-chat.gguf")), "--threads", "1", "--slots", "2", "--ctx-size", "1024"],
      env: { JOTA_ENGINE_TOKEN: token },
      healthService: "jota.v1.Inference",
      logger: silentLogger,
      restart: true,
      backoffInitialMs: 1500,
      startTimeoutMs: 60_000,
    });
    [aAddr, b, stt, db] = await Promise.all([
      a.start(),
      startEngine({ kind: "inference", token }),
      startEngine({ kind: "transcription", token }),
      openDatabase({ dataDir: await freshPgliteDir(), logger: silentLogger }),
    ]);
    pool = new EnginePool({ inference: [aAddr, b.address!], transcription: [stt.address!], token, ...FAST });
    await Promise.all([aAddr, b.address!, stt.address!].map((addr) => changeOf(pool, addr, serving)));
  });
  after(async () => {
    pool?.close();
    await Promise.all([a?.stop(), b?.stop(), stt?.stop(), db?.close()]);
  });

  it("watches every engine and knows its slots and context", () => {
    const byAddr = new Map(pool.status().map((s) => [s.address, s]));
    for (const addr of [aAddr, b.address!]) {
      const s = byAddr.get(addr)!;
      assert.deepEqual([s.kind, s.health, s.slotsTotal, s.contextSize], ["inference", "serving", 2, 1024]);
    }
    assert.equal(byAddr.get(stt.address!)!.kind, "transcription");
    const lease = pool.pickTranscription();
    assert.equal(lease.address, stt.address);
    lease.release();
  });

  it("returns a conversation to its engine while it is healthy, even when another has more free slots", () => {
    const busy = [pool.pickInference({ affinity: aAddr }), pool.pickInference({ affinity: aAddr })]; // A's two slots taken
    try {
      for (let i = 0; i < 5; i++) {
        const lease = pool.pickInference({ affinity: aAddr });
        assert.deepEqual([lease.address, lease.reason, lease.movedFrom], [aAddr, "affinity", undefined]);
        lease.release();
      }
      // Without affinity, the least loaded.
      const free = pool.pickInference();
      assert.deepEqual([free.address, free.reason], [b.address, "least_loaded"]);
      free.release();
    } finally {
      for (const l of busy) l.release();
    }
  });

  it("fails over when the engine is killed (SIGKILL), and takes it back once it is restarted", async () => {
    const user = await db.repos.users.create({ username: "failover" });
    let conv = await db.repos.conversations.create(user.id);
    let lease = await engineForConversation(pool, db.repos.conversations, conv);
    lease.release();
    if (lease.address !== aAddr) {
      // Pin it to A for the test, as an earlier turn would have.
      conv = await db.repos.conversations.setAffinity(user.id, conv.id, aAddr);
    } else conv = await db.repos.conversations.get(user.id, conv.id);
    assert.equal(conv.engineAffinity, aAddr);

    const down = changeOf(pool, aAddr, (s) => s.health === "down", 5000);
    const killedAt = Date.now();
    process.kill(a.pid!, "SIGKILL");
    const st = await down;
    const noticedMs = Date.now() - killedAt;
    assert.ok(noticedMs < 1000, `down noticed after ${noticedMs} ms (Watch should see it at once)`);
    assert.match(st.reason ?? "", /UNAVAILABLE|ended/);

    lease = await engineForConversation(pool, db.repos.conversations, conv);
    assert.deepEqual([lease.address, lease.reason, lease.movedFrom], [b.address, "least_loaded", aAddr]);
    lease.release();
    conv = await db.repos.conversations.get(user.id, conv.id);
    assert.equal(conv.engineAffinity, b.address, "the new engine is stored on the conversation");

    // The supervisor restarts A on the same port; the pool reconnects by itself.
    await changeOf(pool, aAddr, serving, 60_000);
    const back = pool.pickInference({ affinity: aAddr });
    assert.deepEqual([back.address, back.reason], [aAddr, "affinity"]);
    back.release();
  });

  it("a call that finds its engine gone marks it down at once; it comes back on its own", async () => {
    const lease = pool.pickInference({ affinity: b.address });
    const gone = Object.assign(new Error("14 UNAVAILABLE: Connection dropped"), { code: status.UNAVAILABLE, details: "Connection dropped" });
    lease.release(gone);
    const st = pool.status().find((s) => s.address === b.address)!;
    assert.equal(st.health, "down");
    assert.match(st.reason ?? "", /UNAVAILABLE: Connection dropped/);
    assert.notEqual(pool.pickInference().address, b.address);
    await changeOf(pool, b.address!, serving, 10_000);
  });

  it("sends the bearer token: with a wrong one every engine is down, and says why", async () => {
    const wrong = new EnginePool({ inference: [b.address!], transcription: [], token: "wrong", ...FAST });
    try {
      const st = await changeOf(wrong, b.address!, (s) => s.health === "down", 10_000);
      assert.match(st.reason ?? "", /Info on engine .*: UNAUTHENTICATED: invalid engine token/);
      assert.throws(() => wrong.pickInference(), (e: Error) => e instanceof EngineUnavailableError && /UNAUTHENTICATED/.test(e.message));
    } finally {
      wrong.close();
    }
  });
});

describe("engine pool (no engine reachable)", function () {
  this.timeout(30_000);

  it("names every engine and why it is down, and keeps reconnecting with growing delays", async () => {
    const addr = `127.0.0.1:${await freePort()}`; // nothing listens there
    const pool = new EnginePool({ inference: [addr], transcription: [], token: "", ...FAST });
    const times: number[] = [];
    pool.on("change", (s: EngineStatus) => s.health === "down" && times.push(Date.now()));
    try {
      await new Promise((r) => setTimeout(r, 2500));
      assert.throws(
        () => pool.pickInference(),
        (e: Error) => e instanceof EngineUnavailableError && e.message.startsWith(`no healthy inference engine: ${addr} down (`),
      );
      assert.throws(() => pool.pickTranscription(), /no transcription engine is configured/);
      const attempt = pool.status()[0]!.reconnectAttempt;
      assert.ok(attempt >= 3 && attempt <= 8, `reconnect attempts in 2.5 s: ${attempt}`);
      const gaps = times.slice(1).map((t, i) => t - times[i]!);
      assert.ok(gaps[gaps.length - 1]! > gaps[0]!, `delays grow: ${gaps.join(", ")} ms`);
    } finally {
      pool.close();
    }
  });
});

const delta = (text: string, index: number): GenerateEvent => ({ event: { $case: "delta", value: { text, tokenIds: [index], index } } });
const request = GenerateRequest.fromPartial({ input: { $case: "prompt", value: "hola" }, sessionId: "s", requestId: "r" });

describe("engine clients (stub engine)", function () {
  this.timeout(30_000);

  it("puts a deadline on every unary call: an engine whose Info hangs is marked down", async () => {
    const stub = await stubEngine({ info: () => {} }); // never answers
    const pool = new EnginePool({ inference: [stub.address], transcription: [], token: "", ...FAST, callTimeoutMs: 300 });
    try {
      const st = await changeOf(pool, stub.address, (s) => s.health === "down", 5000);
      assert.match(st.reason ?? "", /Info on engine .*: DEADLINE_EXCEEDED/);
    } finally {
      pool.close();
      stub.stop();
    }
  });

  it("streams Generate as it comes; aborting cancels the call on the engine", async () => {
    let cancelled = false;
    const auth: string[] = [];
    const stub = await stubEngine(
      {
        generate: (call: ServerWritableStream<GenerateRequest, GenerateEvent>) => {
          auth.push(`Generate ${call.metadata.get("authorization")[0] ?? "(none)"}`);
          let i = 0;
          const timer = setInterval(() => call.write(delta(`t${i}`, i++)), 20);
          call.on("cancelled", () => {
            cancelled = true;
            clearInterval(timer);
          });
        },
      },
      auth,
    );
    const { channel, options } = openChannel(stub.address, { token: "tok", reconnectInitialMs: 100, reconnectMaxMs: 1000 });
    const client = new InferenceEngineClient(stub.address, options, 1000);
    try {
      const ac = new AbortController();
      const got: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const ev of client.generate(request, { signal: ac.signal })) {
            if (ev.event?.$case === "delta") got.push(ev.event.value.text);
            if (got.length === 3) ac.abort();
          }
        })(),
        (e: Error) => e instanceof EngineCallError && e.failure === "cancelled",
      );
      assert.deepEqual(got, ["t0", "t1", "t2"]);
      await waitFor(() => cancelled, "the engine saw the cancellation");

      // Leaving the loop early cancels too.
      cancelled = false;
      for await (const ev of client.generate(request)) if (ev.event?.$case === "delta") break;
      await waitFor(() => cancelled, "breaking out of the loop cancels the call");
      assert.deepEqual(auth, ["Generate Bearer tok", "Generate Bearer tok"]);
    } finally {
      client.close();
      channel.close();
      stub.stop();
    }
  });

  it("pool.generate streams from the least-loaded engine and holds a lease meanwhile", async () => {
    const stub = await stubEngine({
      info: (_call, cb) =>
        cb(null, { slotsTotal: 2, slotsBusy: 0, queueLength: 0, queueMax: 8, threads: 1, batchSize: 1, ready: true } as never),
      generate: (call: ServerWritableStream<GenerateRequest, GenerateEvent>) => {
        for (let i = 0; i < 3; i++) call.write(delta(`d${i}`, i));
        call.end();
      },
    });
    const pool = new EnginePool({ inference: [stub.address], transcription: [], token: "", ...FAST });
    try {
      await changeOf(pool, stub.address, serving, 5000);
      const texts: string[] = [];
      for await (const ev of pool.generate(request)) {
        if (ev.event?.$case === "delta") texts.push(ev.event.value.text);
        assert.equal(pool.status()[0]!.inflight, 1);
      }
      assert.deepEqual(texts, ["d0", "d1", "d2"]);
      assert.equal(pool.status()[0]!.inflight, 0);
    } finally {
      pool.close();
      stub.stop();
    }
  });

  it("carries the bearer token on the health watch as on every other call", async () => {
    const auth: string[] = [];
    const stub = await stubEngine({ info: (_call, cb) => cb({ code: status.UNIMPLEMENTED } as ServiceError) }, auth);
    const pool = new EnginePool({ inference: [stub.address], transcription: [], token: "tok2", ...FAST });
    try {
      await changeOf(pool, stub.address, (s) => s.health === "down", 5000);
      assert.equal(auth[0], "Watch Bearer tok2");
    } finally {
      pool.close();
      stub.stop();
    }
  });
});

async function waitFor(cond: () => boolean, what: string, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
