// Documents: one row per (user, source); a new upload of a source starts it
// over, and only the job a row names can settle it.
import assert from "node:assert/strict";
import { NotFoundError } from "../src/db/repositories";
import { describeBackends } from "./helpers/postgres-backends";

describeBackends("documents", (fx) => {
  it("queue -> ready; a new upload of the source resets it; a late job of the old upload changes nothing", async () => {
    const db = await fx.openFresh();
    const u = await db.repos.users.create({ username: "d" });
    const first = await db.repos.documents.queue(u.id, { source: "a.md", title: "A", mediaType: "text/markdown", bytes: 12, jobId: "j1" });
    assert.deepEqual([first.status, first.kind, first.chunks], ["QUEUED", "document", null]);
    assert.equal(await db.repos.documents.ready(u.id, "a.md", "j1", 4, "memory_x_8", "j1"), true);
    const ready = await db.repos.documents.get(u.id, first.id);
    assert.deepEqual([ready.status, ready.chunks, ready.ingestedAt instanceof Date], ["READY", 4, true]);

    const again = await db.repos.documents.queue(u.id, { source: "a.md", mediaType: "text/plain", bytes: 20, jobId: "j2" });
    assert.equal(again.id, first.id, "the same row");
    assert.deepEqual([again.status, again.chunks, again.ingestedAt, again.title, again.jobId], ["QUEUED", null, null, null, "j2"]);
    assert.equal(await db.repos.documents.failed(u.id, "a.md", "j1", "late"), false, "the old job does not own the row any more");
    assert.equal((await db.repos.documents.get(u.id, first.id)).status, "QUEUED");
    assert.equal(await db.repos.documents.failed(u.id, "a.md", "j2", "the engine has no embedding model"), true);
    assert.deepEqual(
      [(await db.repos.documents.get(u.id, first.id)).status, (await db.repos.documents.get(u.id, first.id)).error],
      ["FAILED", "the engine has no embedding model"],
    );
  });

  it("lists newest first with a cursor; delete returns the row and then it is gone", async () => {
    const db = await fx.openFresh();
    const u = await db.repos.users.create({ username: "d" });
    for (const s of ["1", "2", "3"]) await db.repos.documents.queue(u.id, { source: `${s}.md`, mediaType: "text/markdown", bytes: 1, jobId: s });
    const p1 = await db.repos.documents.list(u.id, { limit: 2 });
    assert.deepEqual(p1.items.map((d) => d.source), ["3.md", "2.md"]);
    const p2 = await db.repos.documents.list(u.id, { limit: 2, cursor: p1.nextCursor! });
    assert.deepEqual(p2.items.map((d) => d.source), ["1.md"]);
    const gone = await db.repos.documents.delete(u.id, p2.items[0]!.id);
    assert.equal(gone.source, "1.md");
    await assert.rejects(db.repos.documents.get(u.id, gone.id), NotFoundError);
  });
});
