// Per-session KV reuse: a session's next turn prefills only its new tokens;
// evicted sessions are saved to disk and restored, also across a restart;
// and a restored cache gives exactly the output of a cold prefill.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { InferenceHarness, chat, prompt, tinyChatArgs, tokens, unary } from "./helpers/inference";
import type { TokenizeResponse } from "../../control-plane/src/gen/jota/v1/inference";

async function tokenize(h: InferenceHarness, text: string, addSpecial = true): Promise<number[]> {
  const r = await unary<TokenizeResponse>((cb) => h.client.tokenize({ text, addSpecial, parseSpecial: true, embeddingModel: false }, cb));
  return r.ids;
}

describe("inference: per-session KV reuse", function () {
  this.timeout(300_000);
  let stateDir: string;
  beforeEach(() => (stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "jota-kv-"))));
  afterEach(() => fs.rmSync(stateDir, { recursive: true, force: true }));

  it("turn 2 prefills only the tokens added since turn 1", async () => {
    const h = await InferenceHarness.start(tinyChatArgs(["--state-dir", stateDir]));
    try {
      const p1 = await tokenize(h, "The history of the Roman empire begins");
      const t1 = await h.generate(tokens(p1, { sessionId: "s", maxTokens: 12 }));
      assert.equal(t1.started.cachedTokens, 0);
      const added = await tokenize(h, " and then the user asked a question about it", false);
      const p2 = [...p1, ...t1.ids, ...added];
      const t2 = await h.generate(tokens(p2, { sessionId: "s", maxTokens: 12 }));
      const prefilled = t2.started.promptTokens - t2.started.cachedTokens;
      // The last sampled token of turn 1 was never decoded, so it is prefilled too.
      assert.ok(prefilled <= added.length + 1, `prefilled ${prefilled}, added ${added.length}`);
      assert.ok(t2.started.cachedTokens >= p1.length + t1.ids.length - 1);
      assert.equal(t2.done.usage?.cachedTokens, t2.started.cachedTokens);

      // Same turn without a session id: nothing reused from that slot... and the same output.
      const cold = await h.generate(tokens(p2, { maxTokens: 12 }));
      assert.deepEqual(cold.ids, t2.ids, "reused KV changed the output");
    } finally {
      await h.stop();
    }
  });

  it("chat turns of one session reuse the templated history", async () => {
    const h = await InferenceHarness.start(tinyChatArgs());
    try {
      const m1 = [{ role: "user", content: "¿Cuál es la capital de Portugal?" }];
      const t1 = await h.generate(chat(m1, { sessionId: "c", maxTokens: 8 }));
      const m2 = [...m1, { role: "assistant", content: t1.text }, { role: "user", content: "¿Y de España?" }];
      const t2 = await h.generate(chat(m2, { sessionId: "c", maxTokens: 8 }));
      assert.ok(t2.started.cachedTokens >= t1.started.promptTokens, `cached ${t2.started.cachedTokens} < turn-1 prompt ${t1.started.promptTokens}`);
    } finally {
      await h.stop();
    }
  });

  it("an anonymous request reuses the idle slot that shares its prefix, not the first one", async () => {
    // Two slots: A then B, two unrelated prompts, each sent without a session.
    // B must not overwrite A (it takes the empty slot), so A resent with more
    // text reuses A's prefix; before, every anonymous request took slot 0.
    const h = await InferenceHarness.start(tinyChatArgs(["--slots", "2"]));
    try {
      const a = await tokenize(h, "The history of the Roman empire begins with a small town on the Tiber");
      const b = await tokenize(h, "Quantum mechanics describes the behaviour of very small particles", false);
      const ta = await h.generate(tokens(a, { maxTokens: 4 }));
      assert.equal(ta.started.cachedTokens, 0);
      const tb = await h.generate(tokens(b, { maxTokens: 4 }));
      assert.equal(tb.started.cachedTokens, 0);
      const more = await tokenize(h, " and grew into a state that ruled the Mediterranean", false);
      const again = await h.generate(tokens([...a, ...ta.ids, ...more], { maxTokens: 4 }));
      assert.ok(again.started.cachedTokens >= a.length, `cached ${again.started.cachedTokens} < A's prompt ${a.length}`);
      // ...and B's cache is intact too: B resent reuses it all but its last token.
      const bAgain = await h.generate(tokens(b, { maxTokens: 4 }));
      assert.equal(bAgain.started.cachedTokens, b.length - 1);
      assert.deepEqual(bAgain.ids, tb.ids, "reused KV changed the output");
    } finally {
      await h.stop();
    }
  });

  it("an evicted session is saved to disk and restored on its next turn", async () => {
    const h = await InferenceHarness.start(tinyChatArgs(["--slots", "1", "--state-dir", stateDir]));
    try {
      const pa = await tokenize(h, "Session A talks about astronomy and the stars");
      const a1 = await h.generate(tokens(pa, { sessionId: "A", maxTokens: 8 }));
      await h.generate(prompt("Session B is about cooking pasta", { sessionId: "B", maxTokens: 8 })); // evicts A
      const more = await tokenize(h, " Next question", false);
      const pa2 = [...pa, ...a1.ids, ...more];
      const a2 = await h.generate(tokens(pa2, { sessionId: "A", maxTokens: 8 }));
      assert.equal(a2.started.restoredFromDisk, true);
      assert.ok(a2.started.promptTokens - a2.started.cachedTokens <= more.length + 1);
      const info = await h.info();
      assert.ok((info.counters?.sessionsSaved ?? 0) >= 1);
      assert.ok((info.counters?.sessionsRestored ?? 0) >= 1);
      const cold = await h.generate(tokens(pa2, { maxTokens: 8 }));
      assert.deepEqual(a2.ids, cold.ids, "restored KV changed the output");
    } finally {
      await h.stop();
    }
  });

  it("sessions survive an engine restart (saved at shutdown, restored after)", async () => {
    let h = await InferenceHarness.start(tinyChatArgs(["--state-dir", stateDir]));
    const p = await tokenize(h, "A long-running conversation about gardening");
    const t1 = await h.generate(tokens(p, { sessionId: "garden", maxTokens: 8 }));
    await h.stop(); // SIGTERM: the engine saves its sessions
    assert.ok(fs.readdirSync(stateDir).some((f) => f.endsWith(".kv")), "no session file after shutdown");

    h = await InferenceHarness.start(tinyChatArgs(["--state-dir", stateDir]));
    try {
      const more = await tokenize(h, " What about roses?", false);
      const p2 = [...p, ...t1.ids, ...more];
      const t2 = await h.generate(tokens(p2, { sessionId: "garden", maxTokens: 8 }));
      assert.equal(t2.started.restoredFromDisk, true);
      assert.ok(t2.started.promptTokens - t2.started.cachedTokens <= more.length + 1);
      const cold = await h.generate(tokens(p2, { maxTokens: 8 }));
      assert.deepEqual(t2.ids, cold.ids);
    } finally {
      await h.stop();
    }
  });

  it("a corrupt session file only costs a full prefill", async () => {
    let h = await InferenceHarness.start(tinyChatArgs(["--state-dir", stateDir]));
    await h.generate(prompt("Remember this", { sessionId: "bad", maxTokens: 4 }));
    await h.stop();
    for (const f of fs.readdirSync(stateDir)) fs.writeFileSync(path.join(stateDir, f), "JOTAKV01garbage");
    h = await InferenceHarness.start(tinyChatArgs(["--state-dir", stateDir]));
    try {
      const r = await h.generate(prompt("Remember this and more", { sessionId: "bad", maxTokens: 4 }));
      assert.equal(r.started.restoredFromDisk, false);
      assert.equal(r.started.cachedTokens, 0);
      assert.equal(r.ids.length, 4);
    } finally {
      await h.stop();
    }
  });
});
