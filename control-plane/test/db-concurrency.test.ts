// Concurrent turns on different conversations: every write lands, in order
// within each conversation, with nothing crossing between conversations.
import assert from "node:assert/strict";
import { describeBackends } from "./helpers/postgres-backends";

describeBackends("concurrent writes", (fx) => {
  it("keeps every message of turns running at once on different conversations", async () => {
    const db = await fx.openFresh();
    const users = await Promise.all(["a", "b", "c", "d"].map((u) => db.repos.users.create({ username: u })));
    const convs = await Promise.all(users.flatMap((u) => [0, 1].map(() => db.repos.conversations.create(u.id))));
    const TURNS = 10;
    await Promise.all(
      convs.map(async (c) => {
        for (let t = 0; t < TURNS; t++) {
          const { request } = await db.repos.requests.beginTurn(c.userId, c.id, { content: `${c.id} q${t}` });
          await db.repos.requests.transition(c.userId, request.id, "STREAMING", { engine: "e:1", startedAt: new Date() });
          await db.repos.requests.endTurn(c.userId, request.id, { status: "COMPLETED", reply: { content: `${c.id} a${t}` } });
        }
      }),
    );
    for (const c of convs) {
      const msgs = (await db.repos.messages.list(c.userId, c.id, { limit: 200 })).items;
      const expected = Array.from({ length: TURNS }, (_, t) => [`${c.id} q${t}`, `${c.id} a${t}`]).flat();
      assert.deepEqual(msgs.map((m) => m.content), expected, `conversation ${c.id}`);
      const reqs = (await db.repos.requests.list(c.userId, { conversationId: c.id, limit: 200 })).items;
      assert.equal(reqs.length, TURNS);
      assert.ok(reqs.every((r) => r.status === "COMPLETED"));
    }
  });
});
