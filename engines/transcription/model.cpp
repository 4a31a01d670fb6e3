#include "model.h"

#include <filesystem>
#include <vector>

#include "log.h"
#include "whisper.h"

namespace jota::transcription {

void ContextDeleter::operator()(whisper_context* c) const { whisper_free(c); }

namespace {
void WhisperLog(ggml_log_level level, const char* text, void*) {
  if (level != GGML_LOG_LEVEL_WARN && level != GGML_LOG_LEVEL_ERROR) return;
  std::string msg(text);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  if (msg.empty()) return;
  Log(level == GGML_LOG_LEVEL_ERROR ? "error" : "warn", msg, {{"source", "whisper.cpp"}});
}
}  // namespace

void InitBackend() { whisper_log_set(WhisperLog, nullptr); }

std::string SystemInfo() { return whisper_print_system_info(); }

std::unique_ptr<LoadedModel> LoadModel(const std::string& path, int, std::string* error) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    *error = "model file not found: " + path;
    return nullptr;
  }
  whisper_context_params params = whisper_context_default_params();
  params.use_gpu = false;
  whisper_context* raw = whisper_init_from_file_with_params_no_state(path.c_str(), params);
  if (raw == nullptr) {
    *error = "whisper.cpp could not load " + path + " (not a ggml whisper model)";
    return nullptr;
  }
  auto out = std::make_unique<LoadedModel>();
  out->ctx.reset(raw);
  out->path = path;
  out->type = whisper_model_type_readable(raw);
  out->multilingual = whisper_is_multilingual(raw) != 0;
  return out;
}

std::vector<std::string> Languages(const LoadedModel& m) {
  if (!m.multilingual) return {"en"};
  std::vector<std::string> out;
  for (int id = 0; id <= whisper_lang_max_id(); ++id) out.emplace_back(whisper_lang_str(id));
  return out;
}

}  // namespace jota::transcription
