#include "model.h"

#include <atomic>
#include <filesystem>
#include <vector>

#include "llama.h"
#include "log.h"

namespace jota::inference {

void ModelDeleter::operator()(llama_model* m) const { llama_model_free(m); }

namespace {
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
  // llama.cpp is chatty at INFO during load; keep warnings and errors.
  if (level != GGML_LOG_LEVEL_WARN && level != GGML_LOG_LEVEL_ERROR) return;
  std::string msg(text);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  if (msg.empty()) return;
  Log(level == GGML_LOG_LEVEL_ERROR ? "error" : "warn", msg, {{"source", "llama.cpp"}});
}
}  // namespace

std::atomic<bool> g_cancel_loading{false};

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
    if (g_cancel_loading.load()) {
      *error = "loading cancelled";
      return nullptr;
    }
    *error = "llama.cpp could not load " + path + " (not a GGUF model, or an unsupported architecture)";
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
  info.set_vocab_size(llama_vocab_n_tokens(llama_model_get_vocab(raw)));
  std::string pooling = MetaString(raw, (info.architecture() + ".pooling_type").c_str());
  static const char* kPooling[] = {"none", "mean", "cls", "last", "rank"};
  if (!pooling.empty()) {
    int p = std::atoi(pooling.c_str());
    info.set_pooling(p >= 0 && p < 5 ? kPooling[p] : pooling);
  }
  return out;
}

}  // namespace jota::inference
