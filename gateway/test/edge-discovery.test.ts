// A device that knows only the edge port finds everything there: the
// service through server reflection (a grpc-js client built from the
// reflected descriptors runs a Chat turn), and grpc.health.v1.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";
import { credentials, loadPackageDefinition, Metadata, status, type Client, type ServiceError } from "@grpc/grpc-js";
import { loadFileDescriptorSetFromBuffer, loadSync } from "@grpc/proto-loader";
import { HealthCheckResponse_ServingStatus as Serving, HealthClient, type HealthCheckResponse } from "@jota/control-plane/gen/grpc/health/v1/health";
import { startTestGateway, type TestGateway, type TestUser } from "./helpers/gateway";
import { auth } from "./helpers/edge";

const require = createRequire(import.meta.url);
const reflectionProto = (version: "v1" | "v1alpha") =>
  path.join(path.dirname(require.resolve("@grpc/reflection")), `../proto/grpc/reflection/${version}/reflection.proto`);

type Reflect = { service: Client & { serverReflectionInfo(): import("@grpc/grpc-js").ClientDuplexStream<any, any> } };

/** One reflection request on a fresh stream; its single response. */
function reflect(address: string, version: "v1" | "v1alpha", req: Record<string, unknown>): Promise<any> {
  const pkg = loadPackageDefinition(loadSync(reflectionProto(version), { keepCase: true, oneofs: true, longs: Number, defaults: true })) as any;
  const Ctor = pkg.grpc.reflection[version].ServerReflection as new (a: string, c: ReturnType<typeof credentials.createInsecure>) => Reflect["service"];
  const client = new Ctor(address, credentials.createInsecure());
  return new Promise((resolve, reject) => {
    const call = client.serverReflectionInfo();
    call.on("data", (res: unknown) => {
      resolve(res);
      call.end();
    });
    call.on("error", reject);
    call.write(req);
  }).finally(() => client.close());
}

/** A FileDescriptorSet (field 1: repeated FileDescriptorProto) from the reflected files' bytes. */
function descriptorSet(files: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    const len: number[] = [];
    let n = f.length;
    do {
      len.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
      n >>>= 7;
    } while (n > 0);
    parts.push(Buffer.from([0x0a, ...len]), f);
  }
  return Buffer.concat(parts);
}

describe("edge gRPC: discovery (reflection, health)", function () {
  this.timeout(120_000);
  let t: TestGateway;
  let user: TestUser;
  before(async () => {
    t = await startTestGateway();
    user = await t.user("reflector");
  });
  after(() => t?.close());

  it("lists jota.v1.Assistant and grpc.health.v1.Health (v1 and v1alpha)", async () => {
    for (const v of ["v1", "v1alpha"] as const) {
      const res = await reflect(t.grpcAddress, v, { list_services: "*" });
      const names = (res.list_services_response.service as { name: string }[]).map((s) => s.name);
      assert.ok(names.includes("jota.v1.Assistant"), `${v}: ${names}`);
      assert.ok(names.includes("grpc.health.v1.Health"), `${v}: ${names}`);
    }
  });

  it("a client built from the reflected descriptor runs a Chat turn", async () => {
    const res = await reflect(t.grpcAddress, "v1", { file_containing_symbol: "jota.v1.Assistant" });
    const files = res.file_descriptor_response.file_descriptor_proto as Buffer[];
    assert.ok(files.length >= 1);
    const def = loadFileDescriptorSetFromBuffer(descriptorSet(files), { keepCase: true, oneofs: true, longs: Number, enums: String, defaults: true });
    assert.ok(def["jota.v1.Assistant"], `reflected: ${Object.keys(def)}`);
    const pkg = loadPackageDefinition(def) as any;
    const client = new pkg.jota.v1.Assistant(t.grpcAddress, credentials.createInsecure());
    try {
      const events: any[] = [];
      await new Promise<void>((resolve, reject) => {
        const call = client.Chat({ device_id: "reflected", conversation_id: "", text: "Hola, ¿qué tal?" }, auth(user.key));
        call.on("data", (e: any) => events.push(e));
        call.on("error", reject);
        call.on("end", () => resolve());
      });
      // Decoded with the reflected schema: the oneof names the event.
      const kinds = events.map((e) => e.event);
      assert.equal(kinds[0], "intent");
      assert.equal(kinds.at(-1), "reply_end");
      assert.ok(kinds.slice(1, -1).every((k) => k === "reply_delta") && kinds.length > 2, kinds.join(","));
      const { request_id, conversation_id } = events[0].intent;
      assert.equal(events[0].intent.route, "ROUTE_CHAT");
      assert.equal(events.at(-1).reply_end.request_id, request_id);
      const req = await t.stack.db.repos.requests.get(user.userId, request_id);
      assert.equal(req.status, "COMPLETED");
      assert.equal(req.conversationId, conversation_id);
      const messages = await t.stack.db.repos.messages.recent(user.userId, conversation_id, 10);
      assert.deepEqual(
        messages.map((m) => [m.role, m.content]),
        [
          ["USER", "Hola, ¿qué tal?"],
          ["ASSISTANT", events.slice(1, -1).map((e) => e.reply_delta.text).join("")],
        ],
      );
    } finally {
      client.close();
    }
  });

  it("grpc.health.v1: Check and Watch say SERVING for the server and the service, NOT_FOUND for others", async () => {
    const health = new HealthClient(t.grpcAddress, credentials.createInsecure());
    try {
      const check = (service: string) =>
        new Promise<HealthCheckResponse>((resolve, reject) => health.check({ service }, (err, res) => (err ? reject(err) : resolve(res))));
      assert.equal((await check("")).status, Serving.SERVING);
      assert.equal((await check("jota.v1.Assistant")).status, Serving.SERVING);
      await assert.rejects(check("jota.v1.Nope"), (err: ServiceError) => err.code === status.NOT_FOUND);

      const watched = await new Promise<HealthCheckResponse>((resolve, reject) => {
        const call = health.watch({ service: "jota.v1.Assistant" }, new Metadata());
        call.on("data", (r: HealthCheckResponse) => {
          resolve(r);
          call.cancel();
        });
        call.on("error", (e: ServiceError) => e.code !== status.CANCELLED && reject(e));
      });
      assert.equal(watched.status, Serving.SERVING);
    } finally {
      health.close();
    }
  });
});
