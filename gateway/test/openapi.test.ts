// GET /api/v1/openapi.json (api/openapi.ts) is public and true: every route
// the Express app serves under /api/v1 and /v1 is in it with that method,
// every documented operation is served, every $ref resolves, and every
// operation's documented security is what the route enforces (no credential:
// 401 unless public; a credential without the documented scope or role: 403).
// A router whose routes are not in the document fails here until its specs
// are composed in api/openapi.ts (routeGroups).
import assert from "node:assert/strict";
import type express from "express";
import { createApp } from "../src/app";
import { openapiPath } from "../src/api/openapi";
import { ALL_SCOPES, type Scope } from "../src/auth/principal";
import { api, startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";

interface Layer {
  route?: { path: string | string[]; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
  rawPath?: unknown;
}

/** METHOD /path of every route in the app, mount prefixes included, in OpenAPI path syntax. */
function routeTable(app: express.Express): string[] {
  const out: string[] = [];
  const walk = (stack: Layer[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
        for (const p of paths)
          for (const m of Object.keys(layer.route.methods)) out.push(`${m === "_all" ? "ALL" : m.toUpperCase()} ${openapiPath(prefix + p)}`);
      } else if (layer.handle?.stack) {
        assert.equal(typeof layer.rawPath, "string", `a router mounted at a non-string path (${String(layer.rawPath)}) cannot be checked`);
        walk(layer.handle.stack, prefix + (layer.rawPath === "/" ? "" : (layer.rawPath as string)));
      }
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack, "");
  return out;
}

const METHODS = ["get", "put", "post", "delete", "patch", "options", "head", "trace"];
const under = (path: string) => path === "/v1" || path.startsWith("/v1/") || path === "/api/v1" || path.startsWith("/api/v1/");

describe("OpenAPI document /api/v1/openapi.json", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let doc: any;

  before(async () => {
    t = await startTestGateway({ slots: 1, ctxSize: 512, embeddings: false, env: { JOTA_RATE_LIMIT: "1000000", JOTA_RATE_BURST: "1000000" } });
    const res = await fetch(`${t.url}/api/v1/openapi.json`);
    assert.equal(res.status, 200, "served without a credential");
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
    doc = await res.json();
  });
  after(async () => {
    await t?.close();
  });

  const operations = (): { method: string; path: string; op: any }[] =>
    Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(([m]) => METHODS.includes(m))
        .map(([method, op]) => ({ method, path, op })),
    );

  it("is an OpenAPI 3.1 document with the bearer scheme", () => {
    assert.equal(doc.openapi, "3.1.0");
    assert.equal(typeof doc.info.title, "string");
    assert.deepEqual(doc.components.securitySchemes.bearer, { type: "http", scheme: "bearer", description: doc.components.securitySchemes.bearer.description });
    assert.ok(operations().length > 0);
  });

  it("documents every route the app serves under /api/v1 and /v1, and nothing it does not serve", () => {
    const served = new Set(routeTable(createApp(t.gw.ctx)).filter((r) => under(r.slice(r.indexOf(" ") + 1))));
    const documented = new Set(operations().map((o) => `${o.method.toUpperCase()} ${o.path}`));
    assert.ok(served.has("POST /api/v1/chat"), "the route walk sees the app's routes");
    const undocumented = [...served].filter((r) => !documented.has(r));
    const unserved = [...documented].filter((r) => !served.has(r));
    assert.deepEqual(undocumented, [], "served but not in the OpenAPI document");
    assert.deepEqual(unserved, [], "in the OpenAPI document but not served");
  });

  it("the upload routes document the multipart bodies they take, with the file as a binary part", () => {
    const content = (path: string) => doc.paths[path].post.requestBody.content as Record<string, { schema: { $ref?: string; properties?: Record<string, { format?: string }> } }>;
    const resolve = (s: { $ref?: string; properties?: Record<string, { format?: string }> }) => (s.$ref ? doc.components.schemas[s.$ref.split("/").pop()!] : s);
    assert.deepEqual(Object.keys(content("/api/v1/documents")).sort(), ["application/json", "multipart/form-data"]);
    assert.deepEqual(Object.keys(content("/v1/audio/transcriptions")), ["multipart/form-data"]);
    for (const path of ["/api/v1/documents", "/v1/audio/transcriptions"])
      assert.equal(resolve(content(path)["multipart/form-data"]!.schema).properties?.file?.format, "binary", `${path}: the part 'file'`);
  });

  it("every operation has a unique id, its path parameters, a success response and an error response shape; every $ref resolves", () => {
    const ids = new Set<string>();
    for (const { method, path, op } of operations()) {
      const where = `${method.toUpperCase()} ${path}`;
      assert.ok(op.operationId && !ids.has(op.operationId), `${where}: unique operationId`);
      ids.add(op.operationId);
      assert.ok(op.summary, `${where}: summary`);
      const inPath = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      const declared = (op.parameters ?? []).filter((p: any) => p.in === "path").map((p: any) => p.name).sort();
      assert.deepEqual(declared, inPath, `${where}: path parameters`);
      const statuses = Object.keys(op.responses);
      assert.ok(statuses.some((s) => s.startsWith("2")), `${where}: a success response`);
      if (op.security.length) assert.ok(statuses.includes("401") && statuses.includes("403"), `${where}: documents 401 and 403`);
    }
    const refs: string[] = [];
    const collect = (x: unknown) => {
      if (Array.isArray(x)) x.forEach(collect);
      else if (x && typeof x === "object")
        for (const [k, v] of Object.entries(x)) {
          if (k === "$ref") refs.push(v as string);
          else collect(v);
        }
    };
    collect(doc);
    assert.ok(refs.length > 0);
    for (const ref of new Set(refs)) {
      assert.match(ref, /^#\/components\/schemas\/[A-Za-z0-9_]+$/, ref);
      assert.ok(doc.components.schemas[ref.split("/").pop()!], `unresolved ${ref}`);
    }
  });

  it("requestBody.required is true exactly where the route refuses a request without a body", async () => {
    // Real objects for the path parameters, so that a route which takes no body answers 2xx rather than 404.
    const conversation = await t.stack.db.repos.conversations.create(t.admin.userId, { title: "for the body check" });
    const owner = await t.user("body-check-owner");
    const device = await t.stack.db.repos.devices.create(owner.userId, { name: "body-check" });
    const concrete: Record<string, string> = {
      "/api/v1/conversations/{id}": `/api/v1/conversations/${conversation.id}`,
      "/api/v1/admin/users/{id}/keys": `/api/v1/admin/users/${owner.userId}/keys`,
      "/api/v1/admin/users/{id}/devices": `/api/v1/admin/users/${owner.userId}/devices`,
      "/api/v1/admin/users/{id}/devices/{device_id}/tokens": `/api/v1/admin/users/${owner.userId}/devices/${device.id}/tokens`,
    };
    const withBody = operations().filter((o) => o.op.requestBody);
    assert.ok(withBody.some((o) => o.op.requestBody.required === false), "some route takes no body (POST /api/v1/conversations)");
    for (const { method, path, op } of withBody) {
      const where = `${method.toUpperCase()} ${path}`;
      const url = concrete[path] ?? path.replace(/\{[^}]+\}/g, "0193a0c0-0000-7000-8000-000000000000");
      // No body at all: no content type, Content-Length 0.
      const r = await api(t, t.admin.key, method.toUpperCase(), url);
      if (op.requestBody.required === true) assert.ok([400, 415].includes(r.status), `${where} is documented as needing a body, yet answered ${r.status} without one: ${r.text}`);
      else {
        assert.equal(op.requestBody.required, false, `${where}: requestBody.required is a boolean`);
        assert.ok(r.status >= 200 && r.status < 300, `${where} is documented as taking no body, yet answered ${r.status} without one (a path needing real ids goes in 'concrete'): ${r.text}`);
      }
    }
  });

  it("the documented security is what each route enforces", async () => {
    const users = new Map<string, TestUser>();
    const lacking = async (auth: string): Promise<TestUser> => {
      if (!users.has(auth)) {
        // For a scope: a key with every other scope. For admin: a USER (not ADMIN) with every scope.
        const scopes = auth === "admin" ? [...ALL_SCOPES] : ALL_SCOPES.filter((s) => s !== auth);
        users.set(auth, await t.user(`lacks-${auth}`, scopes as Scope[]));
      }
      return users.get(auth)!;
    };
    const fill = (path: string) => path.replace(/\{[^}]+\}/g, "0193a0c0-0000-7000-8000-000000000000");
    for (const { method, path, op } of operations()) {
      const where = `${method.toUpperCase()} ${path}`;
      const anon = await api(t, undefined, method.toUpperCase(), fill(path));
      if (op.security.length === 0) {
        assert.notEqual(anon.status, 401, `${where} is documented public`);
        continue;
      }
      assert.equal(anon.status, 401, `${where} is documented as needing a credential`);
      const auth = op["x-jota-auth"];
      assert.ok(["admin", "credential", ...ALL_SCOPES].includes(auth), `${where}: x-jota-auth names a scope, admin or credential`);
      if (auth === "credential") continue; // any credential will do: there is none that lacks something
      const without = await api(t, (await lacking(auth)).key, method.toUpperCase(), fill(path));
      assert.equal(without.status, 403, `${where}: a credential without '${auth}' is refused`);
    }
  });
});
