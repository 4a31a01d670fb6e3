// Deterministic routing rules: regular expressions over normalized text
// (normalize.ts), Spanish and English. The built-in set recognises
// home-automation commands, questions about the user's own notes and
// documents, and greetings / small talk / general questions; anything else
// is left undecided (for the model, when enabled).
//
// Extra rules come from a JSON file (JOTA_ROUTER_RULES), checked before the
// built-in ones:
//
//   {
//     "command":       ["^riega (el|los) \\w+", {"name": "garden", "pattern": "\\bcesped\\b"}],
//     "needs_context": ["\\bmi diario\\b"],
//     "chat":          ["^jaja"]
//   }
//
// Each pattern is written against normalized text: lower case, without
// accents or punctuation ("que dice el documento", not "¿Qué dice…?").
import fs from "node:fs";
import { ConfigError } from "../config/config";

export type Route = "chat" | "command" | "needs_context";
export const ROUTES: readonly Route[] = ["chat", "command", "needs_context"];

export interface Rule {
  /** Recorded as the request's route detail, e.g. "es.command.verb". */
  name: string;
  route: Route;
  pattern: RegExp;
}

const alt = (words: string[]) => `(?:${words.join("|")})`;

// --- commands -----------------------------------------------------------------
// Words that may precede an order: politeness, a wake word, a greeting.
const PREFIX_ES = alt(["por favor", "oye", "jota", "hola", "hey", "puedes", "podrias", "me puedes", "me podrias", "quiero que", "necesito que"]);
const PREFIX_EN = alt(["please", "hey", "ok", "okay", "jota", "can you", "could you", "would you", "will you", "i want you to", "i need you to"]);
const lead = (prefix: string) => `^(?:${prefix} )*`;

// Verbs that are an order whatever follows ("apaga", "enciende la tele").
const SWITCH_ES = alt([
  "encien(?:de|da|das)", "encender", "prend(?:e|a|as|er)", "apag(?:a|ue|ues|ar)", "activ(?:a|e|es|ar)", "desactiv(?:a|e|es|ar)",
  "conect(?:a|e|ar)", "desconect(?:a|e|ar)", "recuerdame", "recordarme", "avisame", "despiertame",
]);
const SWITCH_EN = alt(["turn (?:on|off|up|down)", "switch (?:on|off)", "dim", "brighten", "unlock", "mute", "unmute", "remind me", "wake me"]);
// Verbs that are an order only about a device or setting ("pon la
// temperatura a 21", but not "pon un ejemplo"; "para la música", but not
// "para qué sirve").
const DEVICE_VERB_ES = alt([
  "pon(?:ga|gas|er|me)?", "sub(?:e|a|as|ir)", "baj(?:a|e|es|ar)", "abr(?:e|a|as|ir)", "cierr(?:a|e|as)", "cerrar",
  "ajust(?:a|e|ar)", "cambi(?:a|e|ar)", "program(?:a|e|ar)", "para(?! que)", "pare", "parar", "deten(?:ga|er)?",
  "paus(?:a|ar)", "reanud(?:a|ar)", "reproduc(?:e|ir)", "silenci(?:a|ar)", "bloque(?:a|ar)", "desbloque(?:a|ar)",
]);
const DEVICE_VERB_EN = alt([
  "turn", "switch", "set", "open", "close", "shut", "lock", "play", "pause", "stop", "resume", "start", "raise", "lower",
  "increase", "decrease", "put", "change", "adjust",
]);
const DEVICE_ES = alt([
  "luz", "luces", "lamparas?", "bombillas?", "temperatura", "calefaccion", "calefactor", "estufa", "aire", "termostato",
  "persianas?", "cortinas?", "toldo", "musica", "cancion", "canciones", "radio", "tele", "television", "tv", "volumen",
  "alarmas?", "temporizador", "despertador", "recordatorio", "ventilador", "puertas?", "garaje", "cerradura", "enchufes?",
  "modo", "escena", "aspiradora", "robot", "lavadora", "lavavajillas", "horno", "cafetera", "riego", "grados", "altavoz",
  "podcast", "lista de reproduccion",
]);
const DEVICE_EN = alt([
  "lights?", "lamps?", "bulbs?", "thermostat", "temperature", "heating", "heater", "ac", "air conditioning", "air conditioner",
  "fan", "blinds", "shutters", "curtains", "doors?", "garage", "lock", "music", "songs?", "playlist", "radio", "tv",
  "television", "volume", "alarms?", "timer", "vacuum", "washing machine", "dishwasher", "oven", "coffee", "sprinklers?",
  "scene", "mode", "degrees", "speaker", "podcast",
]);

// --- needs context ------------------------------------------------------------
const DOCS_ES = alt(["documentos?", "archivos?", "ficheros?", "pdfs?", "informes?", "notas?", "apuntes", "contratos?", "correos?", "emails?", "manual(?:es)?", "diario", "agenda", "calendario", "mensajes"]);
const DOCS_EN = alt(["documents?", "files?", "pdfs?", "reports?", "notes?", "contracts?", "emails?", "manuals?", "journal", "diary", "calendar", "messages"]);

// --- chat ---------------------------------------------------------------------
const SMALLTALK_ES = alt([
  "hola", "buenas", "buenos dias", "buenas tardes", "buenas noches", "que tal", "saludos", "adios", "hasta luego", "chao",
  "gracias", "muchas gracias", "vale", "de acuerdo", "perfecto", "genial", "como estas", "quien eres", "que eres",
  "como te llamas", "que puedes hacer",
]);
const ASK_ES = alt([
  "que", "para que", "cual(?:es)?", "como", "cuando", "donde", "quien(?:es)?", "por que", "porque", "cuant[oa]s?", "sabes", "crees",
  "cuentame", "explica(?:me)?", "dime", "escribe(?:me)?", "traduce(?:me)?", "resume(?:me)?", "ayudame", "dame", "hazme",
  "inventa", "describe", "define", "compara", "calcula", "recomiendame", "sugiere(?:me)?", "es", "son", "hay",
  "pon(?:me)? (?:un|otro|algun) ejemplo",
]);
const SMALLTALK_EN = alt([
  "hi", "hello", "hey", "good (?:morning|afternoon|evening|night)", "thanks", "thank you", "bye", "goodbye", "okay", "ok",
  "cool", "great", "nice", "how are you", "who are you", "what can you do", "what is your name",
]);
const ASK_EN = alt([
  "what", "whats", "who", "how", "why", "when", "where", "which", "is", "are", "can", "could", "do", "does", "should",
  "would", "tell me", "explain", "write", "translate", "summari[sz]e", "help me", "give me", "describe", "define", "compare",
  "calculate", "recommend", "suggest",
]);

const r = (name: string, route: Route, source: string): Rule => ({ name, route, pattern: new RegExp(source) });

/** In order: the first match decides. References to the user's own data come first, then orders, then chat. */
export const BUILTIN_RULES: readonly Rule[] = [
  r("es.context.document_says", "needs_context", `\\b(?:que|cual|donde) (?:dice|pone|decia|explica) (?:el|la|los|las|mi|mis|ese|esa|este|esta) ${DOCS_ES}\\b`),
  r("es.context.according_to", "needs_context", `\\b(?:segun|de acuerdo con|basandote en) (?:mis|mi|el|la|los|las) ${DOCS_ES}\\b`),
  r("es.context.my_documents", "needs_context", `\\b(?:en|de|entre) mis ${DOCS_ES}\\b`),
  r("es.context.what_i_said", "needs_context", `\\b(?:que|lo que) (?:te )?(?:dije|conte|comente|mencione|escribi|hablamos|te pase)\\b`),
  r("es.context.remember", "needs_context", `\\b(?:te acuerdas|recuerdas) (?:de )?(?:lo que|que|cuando|donde|como)\\b`),
  r("es.context.shared_document", "needs_context", `\\b${DOCS_ES} que (?:te )?(?:subi|pase|mande|envie|adjunte|comparti|di)\\b`),
  r("en.context.document_says", "needs_context", `\\bwhat (?:does|did) (?:the|my|this|that) ${DOCS_EN} say\\b`),
  r("en.context.according_to", "needs_context", `\\b(?:according to|based on|from|in|through|search) my ${DOCS_EN}\\b`),
  r("en.context.what_i_said", "needs_context", `\\bwhat (?:did|have) i (?:say|said|tell you|told you|mention|mentioned|write|wrote)\\b`),
  r("en.context.remember", "needs_context", `\\b(?:do you )?remember (?:what|when|where|how) i\\b`),
  r("en.context.shared_document", "needs_context", `\\b${DOCS_EN} (?:that )?i (?:uploaded|sent|shared|attached|gave you)\\b`),
  r("en.context.search_mine", "needs_context", `^(?:${PREFIX_EN} )*(?:search|look (?:up|for)|find)\\b.* (?:in|from) my ${DOCS_EN}\\b`),

  r("es.command.switch", "command", `${lead(PREFIX_ES)}${SWITCH_ES}\\b`),
  r("es.command.device", "command", `${lead(PREFIX_ES)}${DEVICE_VERB_ES}\\b.*\\b${DEVICE_ES}\\b`),
  r("en.command.switch", "command", `${lead(PREFIX_EN)}${SWITCH_EN}\\b`),
  r("en.command.device", "command", `${lead(PREFIX_EN)}${DEVICE_VERB_EN}\\b.*\\b${DEVICE_EN}\\b`),

  r("es.chat.smalltalk", "chat", `^${SMALLTALK_ES}\\b`),
  r("es.chat.ask", "chat", `^(?:${PREFIX_ES} )*${ASK_ES}\\b`),
  r("en.chat.smalltalk", "chat", `^${SMALLTALK_EN}\\b`),
  r("en.chat.ask", "chat", `^(?:${PREFIX_EN} )*${ASK_EN}\\b`),
];

/** Reads and validates a rules file; every problem names the file and the variable. */
export function loadRules(file: string, variable = "JOTA_ROUTER_RULES"): Rule[] {
  const fail = (why: string): never => {
    throw new ConfigError(variable, `${file}: ${why}`);
  };
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    return fail((err as Error).message);
  }
  if (!json || typeof json !== "object" || Array.isArray(json)) return fail("expected an object of routes to pattern lists");
  const rules: Rule[] = [];
  for (const [route, list] of Object.entries(json as Record<string, unknown>)) {
    if (!ROUTES.includes(route as Route)) fail(`unknown route '${route}' (routes: ${ROUTES.join(", ")})`);
    if (!Array.isArray(list)) fail(`'${route}' must be a list of patterns`);
    (list as unknown[]).forEach((p, i) => {
      const spec = typeof p === "string" ? { name: `${route}.${i}`, pattern: p } : (p as { name?: unknown; pattern?: unknown });
      if (typeof spec?.pattern !== "string" || (spec.name !== undefined && typeof spec.name !== "string"))
        fail(`${route}[${i}] must be a pattern string or {"name": string, "pattern": string}`);
      try {
        rules.push({ name: `custom.${spec.name ?? `${route}.${i}`}`, route: route as Route, pattern: new RegExp(spec.pattern as string) });
      } catch (err) {
        fail(`${route}[${i}]: ${(err as Error).message}`);
      }
    });
  }
  return rules;
}
