// Who may open /api/v1/ws/chat/{user_id}: decided at the upgrade, as an HTTP
// error with Jota's JSON body (401 without a valid credential, 403 for a
// credential without `chat` or of another user, an ADMIN's included; 404 for
// any other path). The three ways to present a key (header, subprotocol,
// query) work, and a key revoked while its socket is open stops working at
// the next message frame: error frame, close 1008, nothing stored. A check
// that fails for another reason (the database) says nothing about the key:
// its error frame leaves the socket open.
import assert from "node:assert/strict";
import { createLogger } from "@jota/control-plane";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { connect, refused, stored } from "./helpers/ws-client";

describe("ws: authentication and authorisation at the upgrade", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let u: TestUser;
  const logLines: string[] = [];
  before(async () => {
    t = await startTestGateway({ embeddings: false, logger: createLogger("error", {}, (l) => logLines.push(l)) });
    u = await t.user("ws-auth");
  });
  after(() => t?.close());

  const pingPong = async (c: Awaited<ReturnType<typeof connect>>) => {
    c.send({ type: "ping", id: "alive" });
    await c.waitFor((f) => f.type === "pong" && f.id === "alive", "pong");
  };

  it("any other path is 404, in Jota's error shape", async () => {
    for (const path of ["/api/v1/ws/chat", "/api/v1/ws/other/x", "/ws", `/api/v1/ws/chat/${u.userId}/extra`]) {
      const r = await refused(t, u.userId, u.key, { path });
      assert.equal(r.status, 404, path);
      assert.equal(r.json.error.code, "not_found");
      assert.equal(r.json.error.details.path, path);
    }
  });

  it("no credential, a wrong one or a revoked one is 401 before the upgrade", async () => {
    const none = await refused(t, u.userId, undefined);
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, "unauthorized");
    assert.match(String(none.headers["www-authenticate"]), /^Bearer/);

    const wrong = await refused(t, u.userId, "jota_k_000000000000_" + "x".repeat(43));
    assert.deepEqual([wrong.status, wrong.json.error.code], [401, "unauthorized"]);

    const other = await t.user("ws-auth-revoked");
    await t.stack.db.repos.apiKeys.revoke(other.userId, other.keyId);
    for (const via of ["header", "protocol", "query"] as const) {
      const r = await refused(t, other.userId, other.key, { via });
      assert.deepEqual([r.status, r.json.error.code], [401, "unauthorized"], via);
    }
  });

  it("another user's user_id is 403, also for an ADMIN; so is a key without the chat scope", async () => {
    const r = await refused(t, t.admin.userId, u.key);
    assert.deepEqual([r.status, r.json.error.code, r.json.error.details.user_id], [403, "forbidden", t.admin.userId]);
    const admin = await refused(t, u.userId, t.admin.key);
    assert.deepEqual([admin.status, admin.json.error.code], [403, "forbidden"], "an admin cannot speak as another user");
    const bogus = await refused(t, "not-a-user-id", u.key);
    assert.equal(bogus.status, 403);

    const noChat = await t.user("ws-auth-nochat", ["memory"]);
    const scoped = await refused(t, noChat.userId, noChat.key);
    assert.deepEqual([scoped.status, scoped.json.error.code], [403, "forbidden"]);
    assert.match(scoped.json.error.message, /'chat' scope/);
  });

  it("the key in the subprotocol list: the server answers jota.v1, never the key", async () => {
    const c = await connect(t, u.userId, u.key, { via: "protocol" });
    assert.equal(c.protocol, "jota.v1");
    await pingPong(c);
    c.close();

    const withoutJota = await refused(t, u.userId, u.key, { via: "protocol", protocols: ["chat.v2"] });
    assert.deepEqual([withoutJota.status, withoutJota.json.error.code, withoutJota.json.error.details.field], [400, "validation_error", "Sec-WebSocket-Protocol"]);
    assert.deepEqual(withoutJota.json.error.details.offered, ["chat.v2"], "the key is not echoed back in the error");
  });

  it("the key in ?access_token= works; the Authorization header, when present, wins over it", async () => {
    const c = await connect(t, u.userId, u.key, { via: "query" });
    await pingPong(c);
    c.close();

    const r = await refused(t, u.userId, u.key, { via: "query", clientOptions: { headers: { authorization: "Bearer jota_k_wrong" } } });
    assert.equal(r.status, 401);
  });

  it("a key revoked while its socket is open: the next message gets unauthorized, the socket closes 1008, nothing is stored", async () => {
    const v = await t.user("ws-auth-live");
    const c = await connect(t, v.userId, v.key);
    await pingPong(c);
    const before = await stored(t.stack, v.userId);
    await t.stack.db.repos.apiKeys.revoke(v.userId, v.keyId);
    c.send({ type: "message", id: "late", content: "hola" });
    const err = await c.waitFor((f) => f.type === "error", "the error frame");
    assert.deepEqual([err.id, err.code], ["late", "unauthorized"]);
    const closed = await c.closed;
    assert.equal(closed.code, 1008);
    assert.deepEqual(await stored(t.stack, v.userId), before);
  });

  it("a key revoked while a turn streams to a peer that stops reading: the turn ends at once, not when the close handshake gives up", async () => {
    const v = await t.user("ws-auth-deaf");
    const c = await connect(t, v.userId, v.key);
    c.send({ type: "message", id: "long", content: "Talk without stopping", options: { max_tokens: 4000 } });
    const start = await c.waitFor((f) => f.type === "start" && f.id === "long", "the long turn's start");
    await c.waitFor((f) => f.type === "token" && f.request_id === start.request_id, "its first token");
    await t.stack.db.repos.apiKeys.revoke(v.userId, v.keyId);
    c.send({ type: "message", id: "late", content: "hola" });
    // The peer reads nothing more: neither the error frame nor the close (ws waits 30 s for its answer).
    c.ws.pause();
    try {
      const deadline = Date.now() + 10_000;
      let req = await t.stack.db.repos.requests.get(v.userId, start.request_id);
      while (req.status !== "ABORTED" && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        req = await t.stack.db.repos.requests.get(v.userId, start.request_id);
      }
      assert.deepEqual([req.status, req.finishReason], ["ABORTED", "cancelled"], "the revoked key's turn stopped");
    } finally {
      c.ws.terminate();
    }
  });

  it("a database failure while re-checking the key: internal_error frame, logged, the socket stays open and the next message works", async () => {
    const v = await t.user("ws-auth-hiccup");
    const c = await connect(t, v.userId, v.key);
    await pingPong(c);
    const before = await stored(t.stack, v.userId);
    // The gateway's Authenticator reads the key through this repository: its next read fails once, as on a dropped connection.
    const keys = t.stack.db.repos.apiKeys;
    let failures = 0;
    const real = keys.authenticate;
    keys.authenticate = function (this: typeof keys, ...args: Parameters<typeof real>) {
      if (failures++ === 0) return Promise.reject(new Error("connection terminated"));
      return real.apply(this, args);
    };
    try {
      const logged = logLines.length;
      c.send({ type: "message", id: "hiccup", content: "hola", options: { max_tokens: 2 } });
      const err = await c.waitFor((f) => f.type === "error" && f.id === "hiccup", "the error frame");
      assert.deepEqual([err.code, "request_id" in err], ["internal_error", false], JSON.stringify(err));
      c.send({ type: "ping", id: "after-hiccup" });
      await c.waitFor((f) => f.type === "pong" && f.id === "after-hiccup", "the pong after the error");
      assert.equal(c.ws.readyState, c.ws.OPEN, "the socket stays open");
      assert.equal(failures, 1);
      const lines = logLines.slice(logged).map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(
        lines.some((l) => l.level === "error" && /connection terminated/.test(JSON.stringify(l))),
        `the failure is logged: ${JSON.stringify(lines)}`,
      );
      assert.deepEqual(await stored(t.stack, v.userId), before, "the refused message stored nothing");

      c.send({ type: "message", id: "again", content: "hola", options: { max_tokens: 2 } });
      const end = await c.waitFor((f) => (f.type === "end" || f.type === "error") && f.id === "again", "the next message's end");
      assert.deepEqual([end.type, end.status], ["end", "COMPLETED"], JSON.stringify(end));
      assert.equal(c.ws.readyState, c.ws.OPEN);
    } finally {
      delete (keys as { authenticate?: unknown }).authenticate; // the prototype's method again
      c.close();
    }
  });
});
