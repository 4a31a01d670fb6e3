// Prometheus metrics (prom-client), served at /metrics. One registry per
// gateway instance (tests run several in one process). Every interface
// records into the same families, labelled by interface, so one dashboard
// shows REST, WS, /v1 and gRPC side by side.
import client from "prom-client";
import type { EnginePool, TurnRunner } from "@jota/control-plane";

export type Interface = "rest" | "ws" | "openai" | "grpc";

export class Metrics {
  readonly registry = new client.Registry();
  readonly httpRequests: client.Counter<"method" | "route" | "status">;
  readonly httpDuration: client.Histogram<"method" | "route">;
  readonly wsConnections: client.Gauge;
  readonly wsFrames: client.Counter<"direction" | "type">;
  readonly grpcCalls: client.Counter<"method" | "code">;
  readonly activeStreams: client.Gauge<"interface">;
  readonly turns: client.Counter<"interface" | "status">;
  readonly ttft: client.Histogram<"interface">;
  readonly tokensPerSecond: client.Histogram<"interface">;
  readonly rateLimited: client.Counter<"interface">;

  constructor(deps: { pool: EnginePool; runner: TurnRunner }) {
    const r = this.registry;
    client.collectDefaultMetrics({ register: r, prefix: "jota_" });
    this.httpRequests = new client.Counter({
      name: "jota_http_requests_total",
      help: "HTTP requests by route and status",
      labelNames: ["method", "route", "status"],
      registers: [r],
    });
    this.httpDuration = new client.Histogram({
      name: "jota_http_request_duration_seconds",
      help: "HTTP request duration (to the end of the response, streams included)",
      labelNames: ["method", "route"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [r],
    });
    this.wsConnections = new client.Gauge({ name: "jota_ws_connections", help: "Open WebSocket connections", registers: [r] });
    this.wsFrames = new client.Counter({
      name: "jota_ws_frames_total",
      help: "WebSocket frames by direction (in/out) and type",
      labelNames: ["direction", "type"],
      registers: [r],
    });
    this.grpcCalls = new client.Counter({
      name: "jota_grpc_calls_total",
      help: "Edge gRPC calls by method and status code",
      labelNames: ["method", "code"],
      registers: [r],
    });
    this.activeStreams = new client.Gauge({
      name: "jota_active_streams",
      help: "Streaming turns in progress, by interface",
      labelNames: ["interface"],
      registers: [r],
    });
    this.turns = new client.Counter({
      name: "jota_turns_total",
      help: "Chat turns by interface and final status",
      labelNames: ["interface", "status"],
      registers: [r],
    });
    this.ttft = new client.Histogram({
      name: "jota_time_to_first_token_seconds",
      help: "Time from the request to the first streamed token",
      labelNames: ["interface"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2.5, 5, 10],
      registers: [r],
    });
    this.tokensPerSecond = new client.Histogram({
      name: "jota_tokens_per_second",
      help: "Decode rate of each turn (completion tokens over decode time)",
      labelNames: ["interface"],
      buckets: [1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500],
      registers: [r],
    });
    this.rateLimited = new client.Counter({
      name: "jota_rate_limited_total",
      help: "Requests refused by a rate or stream limit",
      labelNames: ["interface"],
      registers: [r],
    });
    // Engine state is read when scraped, never cached.
    new client.Gauge({
      name: "jota_engine_up",
      help: "1 when the engine serves, 0 otherwise",
      labelNames: ["engine", "kind"],
      registers: [r],
      collect() {
        this.reset();
        for (const s of deps.pool.status()) this.set({ engine: s.address, kind: s.kind }, s.health === "serving" ? 1 : 0);
      },
    });
    new client.Gauge({
      name: "jota_engine_free_slots",
      help: "Free slots of each inference engine (from its Info)",
      labelNames: ["engine"],
      registers: [r],
      collect() {
        this.reset();
        for (const s of deps.pool.status()) if (s.kind === "inference") this.set({ engine: s.address }, Math.max(0, s.slotsTotal - s.slotsBusy));
      },
    });
    new client.Gauge({
      name: "jota_engine_queue_length",
      help: "Requests waiting in each inference engine's queue",
      labelNames: ["engine"],
      registers: [r],
      collect() {
        this.reset();
        for (const s of deps.pool.status()) if (s.kind === "inference") this.set({ engine: s.address }, s.queueLength);
      },
    });
    new client.Gauge({
      name: "jota_turns_running",
      help: "Turns running in this gateway (including detached ones)",
      registers: [r],
      collect() {
        this.set(deps.runner.running);
      },
    });
  }
}
