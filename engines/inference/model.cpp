#include "model.h"

#include <atomic>
#include <filesystem>
#include <vector>

#include "chat.h"
#include "common.h"
#include "json-schema-to-grammar.h"
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
    *error = std::string("the chat template could not be parsed: ") + e.what();
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

llama_sampler* InitGrammarSampler(const llama_vocab* vocab, const std::string& grammar, std::string* error) {
  std::string captured;
  t_log_capture = &captured;
  llama_sampler* g = llama_sampler_init_grammar(vocab, grammar.c_str(), "root");
  t_log_capture = nullptr;
  if (g == nullptr) {
    while (!captured.empty() && (captured.back() == '\n' || captured.back() == ' ')) captured.pop_back();
    *error = "invalid grammar: " + (captured.empty() ? std::string("parse failed") : captured);
  }
  return g;
}

std::string JsonSchemaToGrammar(const std::string& schema, std::string* error) {
  try {
    return json_schema_to_grammar(common_json::parse(schema));
  } catch (const std::exception& e) {
    *error = std::string("invalid json_schema: ") + e.what();
    return "";
  }
}

}  // namespace jota::inference
