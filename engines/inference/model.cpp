#include "model.h"

#include <atomic>
#include <filesystem>
#include <vector>

#include "chat.h"
#include "common.h"
#include "json-schema-to-grammar.h"
#include "llama-grammar.h"  // llama.cpp internal: the GBNF parser, for its error message
#include "log.h"
#include "sampler.h"

namespace jota::inference {

void ModelDeleter::operator()(llama_model* m) const { llama_model_free(m); }
void SamplerDeleter::operator()(llama_sampler* s) const { llama_sampler_free(s); }

namespace {
std::atomic<bool> g_cancel_loading{false};

// llama.cpp reports grammar parse errors only through its log; a thread that
// sets this pointer collects them to return them to the caller.
thread_local std::string* t_log_capture = nullptr;

std::string MetaString(const llama_model* m, const char* key) {
  std::vector<char> buf(256);
  int32_t n = llama_model_meta_val_str(m, key, buf.data(), buf.size());
  if (n < 0) return "";
  if (static_cast<size_t>(n) >= buf.size()) {
    buf.resize(n + 1);
    llama_model_meta_val_str(m, key, buf.data(), buf.size());
  }
  return std::string(buf.data());
}

void LlamaLog(ggml_log_level level, const char* text, void*) {
  if (t_log_capture != nullptr && level == GGML_LOG_LEVEL_ERROR) *t_log_capture += text;
  // llama.cpp is chatty at INFO during load; keep warnings and errors.
  if (level != GGML_LOG_LEVEL_WARN && level != GGML_LOG_LEVEL_ERROR) return;
  std::string msg(text);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  if (msg.empty()) return;
  Log(level == GGML_LOG_LEVEL_ERROR ? "error" : "warn", msg, {{"source", "llama.cpp"}});
}

// llama_grammar_parser::parse() prints the parser's exception ("expecting
// name at ...", "Undefined rule identifier 'x'") to stderr and returns false,
// so through the C API a client would only ever learn "failed to parse
// grammar". This repeats parse()'s steps with the same parser's public members
// to keep that message; "" when the grammar parses.
std::string GrammarParseError(const llama_vocab* vocab, const std::string& src) {
  llama_grammar_parser parser(vocab);
  try {
    const char* pos = src.c_str();
    // parse_space(src, true) is file-local in llama-grammar.cpp: blanks, newlines, # comments.
    auto skip = [](const char* p) {
      while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == '#') {
        if (*p == '#')
          while (*p && *p != '\r' && *p != '\n') ++p;
        else
          ++p;
      }
      return p;
    };
    pos = skip(pos);
    while (*pos) pos = parser.parse_rule(pos);
    for (const auto& [name, id] : parser.symbol_ids)
      if (id >= parser.rules.size() || parser.rules[id].empty())
        return "Undefined rule identifier '" + name + "'";
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// What llama.cpp's GBNF parser cannot survive, checked on the text before it
// runs: it recurses once per nested group (tens of thousands of '(' overflow
// the stack: SIGSEGV), and it expands x{m,n} into copies and n-m rules, where
// m > n loops for ~2^64 steps and x{a}{b}{c}... grows exponentially (the
// second {} repeats the already expanded copies). Literals, character
// classes and comments are skipped. "" when the grammar is within bounds.
constexpr int kMaxGrammarNesting = 512;
constexpr uint64_t kMaxGrammarRepetitions = 10000;

std::string GrammarLimitsError(const std::string& g) {
  int depth = 0;
  uint64_t repetitions = 0;
  bool after_braces = false;  // the last item was a {m,n}: another one would chain
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  for (size_t i = 0; i < g.size(); ++i) {
    char c = g[i];
    if (space(c)) continue;
    bool braces = false;
    if (c == '#') {
      while (i < g.size() && g[i] != '\n' && g[i] != '\r') ++i;
      continue;
    } else if (c == '"' || c == '[') {
      char close = c == '"' ? '"' : ']';
      for (++i; i < g.size() && g[i] != close; ++i)
        if (g[i] == '\\') ++i;
    } else if (c == '(') {
      if (++depth > kMaxGrammarNesting)
        return "groups are nested deeper than " + std::to_string(kMaxGrammarNesting) + " levels";
    } else if (c == ')') {
      depth = std::max(0, depth - 1);
    } else if (c == '{') {
      size_t j = i + 1;
      auto skip = [&] { while (j < g.size() && space(g[j])) ++j; };
      auto number = [&](uint64_t* v) {
        bool any = false;
        for (; j < g.size() && g[j] >= '0' && g[j] <= '9'; ++j, any = true)
          *v = std::min<uint64_t>(*v * 10 + (g[j] - '0'), uint64_t{1} << 40);
        return any;
      };
      uint64_t lo = 0, hi = 0;
      skip();
      number(&lo);
      skip();
      bool has_hi = true;
      if (j < g.size() && g[j] == ',') {
        ++j;
        skip();
        has_hi = number(&hi);
        skip();
      } else {
        hi = lo;
      }
      if (j >= g.size() || g[j] != '}') continue;  // not a repetition: the parser reports it
      std::string rep = g.substr(i, j + 1 - i);
      if (after_braces) return "repetition " + rep + " follows another {}: put the repeated item in parentheses";
      if (has_hi && lo > hi) return "repetition " + rep + ": the minimum is larger than the maximum";
      repetitions += std::max(lo, has_hi ? hi : 0);
      if (repetitions > kMaxGrammarRepetitions)
        return "repetition counts ({m,n}) add up to more than " + std::to_string(kMaxGrammarRepetitions);
      i = j;
      braces = true;
    }
    after_braces = braces;
  }
  return "";
}

// Whether the grammar matches token ids (<[id]>, <|name|>, !<...>) rather than
// text: the sampler's by-first-byte shortcut does not apply to those. An id
// outside the vocabulary (the parser takes any number) goes to `error`.
bool GrammarMatchesTokens(const llama_vocab* vocab, const std::string& src, std::string* error) {
  llama_grammar_parser parser(vocab);
  if (!parser.parse(src.c_str())) return false;
  bool tokens = false;
  uint32_t n_vocab = static_cast<uint32_t>(llama_vocab_n_tokens(vocab));
  for (const auto& rule : parser.rules)
    for (const auto& e : rule)
      if (e.type == LLAMA_GRETYPE_TOKEN || e.type == LLAMA_GRETYPE_TOKEN_NOT) {
        tokens = true;
        if (e.value >= n_vocab && error->empty())
          *error = "token <[" + std::to_string(e.value) + "]> is not in the vocabulary (" + std::to_string(n_vocab) +
                   " tokens)";
      }
  return tokens;
}

uint64_t Fnv1a(const std::string& s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}
}  // namespace

void CancelLoading() { g_cancel_loading.store(true); }

void InitBackend() {
  llama_log_set(LlamaLog, nullptr);
  llama_backend_init();
}

std::string SystemInfo() { return llama_print_system_info(); }

std::unique_ptr<LoadedModel> LoadModel(const std::string& path, int ctx_size, std::string* error) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    *error = "model file not found: " + path;
    return nullptr;
  }
  llama_model_params params = llama_model_default_params();
  params.progress_callback = [](float, void*) { return !g_cancel_loading.load(); };
  llama_model* raw = llama_model_load_from_file(path.c_str(), params);
  if (raw == nullptr) {
    *error = g_cancel_loading.load()
                 ? "loading cancelled"
                 : "llama.cpp could not load " + path + " (not a GGUF model, or an unsupported architecture)";
    return nullptr;
  }
  auto out = std::make_unique<LoadedModel>();
  out->model.reset(raw);
  out->path = path;
  auto& info = out->info;
  std::string name = MetaString(raw, "general.name");
  info.set_name(name.empty() ? std::filesystem::path(path).stem().string() : name);
  info.set_path(path);
  info.set_architecture(MetaString(raw, "general.architecture"));
  info.set_parameters(llama_model_n_params(raw));
  info.set_size_bytes(llama_model_size(raw));
  info.set_train_context_size(llama_model_n_ctx_train(raw));
  info.set_context_size(ctx_size > 0 ? ctx_size : llama_model_n_ctx_train(raw));
  info.set_has_chat_template(llama_model_chat_template(raw, nullptr) != nullptr);
  info.set_embedding_size(llama_model_n_embd(raw));
  info.set_vocab_size(llama_vocab_n_tokens(out->vocab()));
  std::string pooling = MetaString(raw, (info.architecture() + ".pooling_type").c_str());
  static const char* kPooling[] = {"none", "mean", "cls", "last", "rank"};
  if (!pooling.empty()) {
    int p = std::atoi(pooling.c_str());
    info.set_pooling(p >= 0 && p < 5 ? kPooling[p] : pooling);
  }
  char desc[256];
  llama_model_desc(raw, desc, sizeof desc);
  out->fingerprint = Fnv1a(desc, Fnv1a(std::to_string(info.parameters()) + ":" + std::to_string(info.size_bytes()) +
                                       ":" + info.architecture() + ":" + info.name()));
  out->token_groups = TokenGroups::Build(out->vocab());
  if (info.has_chat_template()) {
    std::string err;
    out->chat_template = ChatTemplate::Create(raw, "", &err);
    if (!out->chat_template) LogWarn("the model's chat template cannot be used: " + err);
  }
  return out;
}

std::vector<llama_token> Tokenize(const llama_vocab* vocab, const std::string& text, bool add_special,
                                  bool parse_special) {
  return common_tokenize(vocab, text, add_special, parse_special);
}

std::string TokenPiece(const llama_vocab* vocab, llama_token token, bool special) {
  return common_token_to_piece(vocab, token, special);
}

std::string Detokenize(const llama_vocab* vocab, const std::vector<llama_token>& tokens) {
  return common_detokenize(vocab, tokens, false);
}

std::shared_ptr<ChatTemplate> ChatTemplate::Create(const llama_model* model, const std::string& source,
                                                   std::string* error) {
  if (source.empty() && llama_model_chat_template(model, nullptr) == nullptr) {
    *error = "the model has no chat template";
    return nullptr;
  }
  // llama.cpp's Jinja parser recurses per nested bracket: ~10,000 of them
  // overflow the stack (SIGSEGV). Real templates nest a handful.
  constexpr int kMaxNesting = 256;
  int depth = 0;
  for (char c : source) {
    if (c == '(' || c == '[' || c == '{') {
      if (++depth > kMaxNesting) {
        *error = "brackets are nested deeper than " + std::to_string(kMaxNesting) + " levels";
        return nullptr;
      }
    } else if ((c == ')' || c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  try {
    auto tmpls = common_chat_templates_init(model, source);
    if (!tmpls) {
      *error = "the chat template could not be parsed";
      return nullptr;
    }
    std::shared_ptr<ChatTemplate> t(new ChatTemplate());
    t->tmpls_ = tmpls.release();
    return t;
  } catch (const std::exception& e) {
    std::string why = e.what();
    // common_chat_templates_init rethrows with `throw e;`, slicing the Jinja
    // parser's error to a bare std::exception ("std::exception"). Parsing the
    // source once more the same way recovers the parser's own message.
    if (!source.empty()) {
      try {
        common_chat_template probe(source, "", "");
      } catch (const std::exception& inner) {
        why = inner.what();
      }
    }
    *error = "the chat template could not be parsed: " + why;
    return nullptr;
  }
}

ChatTemplate::~ChatTemplate() {
  if (tmpls_) common_chat_templates_free(tmpls_);
}

std::string ChatTemplate::Apply(const google::protobuf::RepeatedPtrField<jota::v1::ChatMessage>& messages,
                                bool add_generation_prompt) const {
  common_chat_templates_inputs inputs;
  for (const auto& m : messages) {
    common_chat_msg msg;
    msg.role = m.role();
    msg.content = m.content();
    inputs.messages.push_back(std::move(msg));
  }
  inputs.add_generation_prompt = add_generation_prompt;
  inputs.use_jinja = true;
  return common_chat_templates_apply(tmpls_, inputs).prompt;
}

llama_sampler* InitGrammarSampler(const llama_vocab* vocab, const std::string& grammar, std::string* error,
                                  bool* matches_tokens) {
  if (std::string limits = GrammarLimitsError(grammar); !limits.empty()) {
    *error = "invalid grammar: " + limits;
    return nullptr;
  }
  std::string captured;
  t_log_capture = &captured;
  llama_sampler* g = llama_sampler_init_grammar(vocab, grammar.c_str(), "root");
  t_log_capture = nullptr;
  if (g == nullptr) {
    // A syntax error is only in the parser's exception; errors found after
    // parsing (no root, left recursion) only in the log.
    std::string parse_error = GrammarParseError(vocab, grammar);
    if (!parse_error.empty()) captured = parse_error;
    while (!captured.empty() && (captured.back() == '\n' || captured.back() == ' ')) captured.pop_back();
    *error = "invalid grammar: " + (captured.empty() ? std::string("parse failed") : captured);
  } else {
    std::string bad;
    bool tokens = GrammarMatchesTokens(vocab, grammar, &bad);
    if (!bad.empty()) {
      llama_sampler_free(g);
      *error = "invalid grammar: " + bad;
      return nullptr;
    }
    if (matches_tokens) *matches_tokens = tokens;
  }
  return g;
}

std::string JsonSchemaToGrammar(const std::string& schema, std::string* error) {
  // The converter walks the schema recursively: 64 KiB of '[' would overflow
  // the stack. Real schemas nest a few dozen levels.
  constexpr int kMaxDepth = 128;
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < schema.size(); ++i) {
    char c = schema[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) {
        *error = "invalid json_schema: nested deeper than " + std::to_string(kMaxDepth) + " levels";
        return "";
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  try {
    return json_schema_to_grammar(common_json::parse(schema));
  } catch (const std::exception& e) {
    *error = std::string("invalid json_schema: ") + e.what();
    return "";
  }
}

}  // namespace jota::inference
