// The intent router: rules first (Spanish and English, insensitive to case,
// accents and punctuation), the model for what no rule decides (when
// enabled), chat otherwise; the decision says who made it.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ConfigError, loadConfig } from "../src/config/config";
import { silentLogger } from "../src/log";
import type { GenerateEvent, GenerateRequest } from "../src/gen/jota/v1/inference";
import { IntentRouter, decisionRecord, routerFromConfig } from "../src/router/router";
import { ROUTE_SCHEMA, RouterModelError, parseRouterOutput, routerRequest, type Generate } from "../src/router/model";
import { normalize } from "../src/router/normalize";
import { loadRules, type Route } from "../src/router/rules";

const UTTERANCES: Array<[string, Route]> = [
  // commands, Spanish
  ["Enciende la luz del salón", "command"],
  ["apaga", "command"],
  ["Apaga la calefacción, por favor", "command"],
  ["pon la temperatura a 21", "command"],
  ["Pon música relajante en el altavoz de la cocina", "command"],
  ["sube las persianas del dormitorio", "command"],
  ["baja el volumen", "command"],
  ["Abre la puerta del garaje", "command"],
  ["¿Puedes encender las luces del jardín?", "command"],
  ["Por favor, activa el modo noche", "command"],
  ["desactiva la alarma", "command"],
  ["Recuérdame llamar a mamá mañana a las 10", "command"],
  ["para la música", "command"],
  ["Oye Jota, pon una alarma a las 7", "command"],
  // commands, English
  ["Turn on the kitchen lights", "command"],
  ["turn off the TV", "command"],
  ["Switch off the heater.", "command"],
  ["set the thermostat to 21 degrees", "command"],
  ["Could you dim the bedroom lights to 30%?", "command"],
  ["play some jazz music", "command"],
  ["please lock the front door", "command"],
  ["Remind me to buy milk tomorrow", "command"],
  // needs context, Spanish
  ["¿Qué dice el documento sobre las vacaciones?", "needs_context"],
  ["Según mis notas, ¿cuándo es la reunión?", "needs_context"],
  ["busca en mis documentos el contrato del piso", "needs_context"],
  ["¿Qué te dije sobre el viaje a Lisboa?", "needs_context"],
  ["¿Te acuerdas de lo que te conté de mi hermana?", "needs_context"],
  ["Resume el PDF que te pasé ayer", "needs_context"],
  ["¿Qué pone en mis apuntes de historia?", "needs_context"],
  // needs context, English
  ["What did I say about the trip?", "needs_context"],
  ["search my documents for the invoice", "needs_context"],
  ["According to my notes, when is the dentist?", "needs_context"],
  ["What does the contract say about refunds?", "needs_context"],
  ["Do you remember what I told you about my sister?", "needs_context"],
  ["Summarize the report I uploaded", "needs_context"],
  // chat, Spanish
  ["Hola", "chat"],
  ["¡Buenos días!", "chat"],
  ["¿Qué tal estás?", "chat"],
  ["Muchas gracias", "chat"],
  ["Cuéntame un chiste", "chat"],
  ["¿Cuál es la capital de Francia?", "chat"],
  ["Explícame la fotosíntesis en dos frases", "chat"],
  ["Escribe un poema sobre el mar", "chat"],
  ["¿Para qué sirve el aire acondicionado inverter?", "chat"],
  ["Pon un ejemplo de verbo irregular", "chat"],
  // chat, English
  ["hello there", "chat"],
  ["How are you?", "chat"],
  ["Tell me a joke", "chat"],
  ["What is the capital of France?", "chat"],
  ["Explain quantum computing simply", "chat"],
  ["write a haiku about autumn", "chat"],
  ["Thanks!", "chat"],
];

const router = new IntentRouter({ logger: silentLogger });

describe("intent router: rules", () => {
  it(`routes a table of ${UTTERANCES.length} Spanish and English utterances`, () => {
    assert.ok(UTTERANCES.length >= 40);
    const wrong = UTTERANCES.map(([text, want]) => ({ text, want, got: router.byRules(text) }))
      .filter(({ want, got }) => got?.route !== want)
      .map(({ text, want, got }) => `${JSON.stringify(text)}: want ${want}, got ${got ? `${got.route} (${got.detail})` : "no rule"}`);
    assert.deepEqual(wrong, []);
  });

  it("ignores case, accents and punctuation", () => {
    for (const [text] of UTTERANCES) {
      const plain = normalize(text);
      const shouted = text.toUpperCase().replace(/[aeiou]/g, (v) => ({ A: "Á", E: "É", I: "Í", O: "Ó", U: "Ú" })[v.toUpperCase()]!) + "!!!";
      assert.deepEqual(router.byRules(shouted), router.byRules(plain), text);
    }
    assert.equal(normalize("¿¡ENCIENDE la luz del Salón!?"), "enciende la luz del salon");
  });

  it("says which rule decided", () => {
    assert.deepEqual(router.byRules("enciende la luz"), { route: "command", source: "rule", detail: "es.command.switch" });
  });

  it("leaves statements no rule recognises to the model, or chat by default", async () => {
    for (const text of ["tengo hambre", "mañana tengo un examen", "I'm bored"]) {
      assert.equal(router.byRules(text), undefined, text);
      assert.deepEqual(await router.route(text), { route: "chat", source: "default", detail: "no rule matched" });
    }
  });

  it("maps a decision to the requests table's columns", () => {
    assert.deepEqual(decisionRecord({ route: "needs_context", source: "model", detail: "model" }), {
      route: "NEEDS_CONTEXT",
      source: "MODEL",
      detail: "model",
    });
  });
});

describe("intent router: configurable rules", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "jota-rules-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const write = (content: string) => {
    const f = path.join(dir, `rules-${++n}.json`);
    fs.writeFileSync(f, content);
    return f;
  };

  it("checks rules from JOTA_ROUTER_RULES before the built-in ones", () => {
    const file = write(JSON.stringify({ command: ["^riega (el|los) \\w+"], needs_context: [{ name: "diary", pattern: "\\bmi diario\\b" }] }));
    const r = routerFromConfig(loadConfig({ JOTA_ROUTER_RULES: file }), silentLogger, () => {
      throw new Error("model disabled");
    });
    assert.deepEqual(r.byRules("Riega el césped"), { route: "command", source: "rule", detail: "custom.command.0" });
    assert.deepEqual(r.byRules("¿Qué escribí en mi diario?"), { route: "needs_context", source: "rule", detail: "custom.diary" });
  });

  for (const [content, msg] of [
    ["{", /JOTA_ROUTER_RULES: .*rules-\d+\.json: .*JSON/],
    [`{"orders": ["x"]}`, /unknown route 'orders'/],
    [`{"chat": "x"}`, /'chat' must be a list/],
    [`{"chat": ["(unclosed"]}`, /chat\[0\]: Invalid regular expression/],
    [`{"chat": [{"name": 1, "pattern": "x"}]}`, /chat\[0\] must be a pattern string or/],
  ] as const) {
    it(`refuses a bad rules file (${content})`, () => {
      assert.throws(() => loadRules(write(content)), (e: Error) => e instanceof ConfigError && msg.test(e.message));
    });
  }
});

/** A stand-in for the engine's Generate that records the request and streams `output`. */
function fakeGenerate(output: string | Error, seen: GenerateRequest[] = []): Generate {
  return async function* (req) {
    seen.push(req);
    if (output instanceof Error) throw output;
    yield { event: { $case: "started", value: { promptTokens: 50, cachedTokens: 0, queueMs: 0, slot: 0, restoredFromDisk: false } } } as GenerateEvent;
    for (const piece of [output.slice(0, 5), output.slice(5)])
      yield { event: { $case: "delta", value: { text: piece, tokenIds: [], index: 0 } } } as GenerateEvent;
  };
}

describe("intent router: model", () => {
  it("asks the model only when no rule decides, with a JSON-schema-constrained greedy request", async () => {
    const seen: GenerateRequest[] = [];
    const r = new IntentRouter({ logger: silentLogger, model: fakeGenerate(`{"route": "needs_context"}`, seen) });
    assert.equal((await r.route("enciende la luz")).source, "rule");
    assert.equal(seen.length, 0);
    assert.deepEqual(await r.route("lo del martes con Pedro", { requestId: "req-1" }), { route: "needs_context", source: "model", detail: "model" });
    assert.equal(seen.length, 1);
    const req = seen[0]!;
    assert.deepEqual(req.constraint, { $case: "jsonSchema", value: JSON.stringify(ROUTE_SCHEMA) });
    assert.deepEqual(JSON.parse(req.constraint!.value), {
      type: "object",
      properties: { route: { type: "string", enum: ["chat", "command", "needs_context"] } },
      required: ["route"],
      additionalProperties: false,
    });
    assert.equal(req.sampling?.temperature, 0);
    assert.equal(req.sessionId, "");
    assert.equal(req.requestId, "req-1");
    assert.ok(req.maxTokens > 0 && req.maxTokens <= 32);
    assert.equal(req.input?.$case, "messages");
    const items = req.input?.$case === "messages" ? req.input.value.items : [];
    assert.deepEqual(items.map((m) => m.role), ["system", "user"]);
    assert.equal(items[1]!.content, "lo del martes con Pedro");
  });

  it("parses the constrained output, with or without whitespace", () => {
    assert.equal(parseRouterOutput(`{"route":"command"}`), "command");
    assert.equal(parseRouterOutput(` { "route" : "chat" }\n`), "chat");
    assert.throws(() => parseRouterOutput(`{"route":"weather"}`), RouterModelError);
    assert.throws(() => parseRouterOutput(`route: chat`), /not JSON/);
  });

  it("routes as chat, saying why, when the model fails or answers nonsense", async () => {
    for (const [gen, why] of [
      [fakeGenerate(new Error("14 UNAVAILABLE: engine gone")), /model failed: 14 UNAVAILABLE: engine gone/],
      [fakeGenerate(`{"route":"dance"}`), /model failed: model output has no valid route/],
    ] as const) {
      const d = await new IntentRouter({ logger: silentLogger, model: gen }).route("lo del martes");
      assert.equal(d.route, "chat");
      assert.equal(d.source, "default");
      assert.match(d.detail, why);
    }
  });

  it("gives the model a deadline", async () => {
    const hang: Generate = async function* (_req, signal) {
      await new Promise((_, reject) => signal?.addEventListener("abort", () => reject(new Error("cancelled"))));
      yield* [];
    };
    const d = await new IntentRouter({ logger: silentLogger, model: hang, modelTimeoutMs: 50 }).route("lo del martes");
    assert.deepEqual([d.source, d.detail], ["default", "model failed: model took over 50 ms"]);
  });

  it("the request carries no session, so routing never touches a conversation's KV cache", () => {
    assert.equal(routerRequest("x").sessionId, "");
  });
});
