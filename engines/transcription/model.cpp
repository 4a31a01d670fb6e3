#include "model.h"

#include <chrono>
#include <filesystem>
#include <vector>

#include "audio.h"
#include "log.h"
#include "whisper.h"

namespace jota::transcription {

static_assert(kWhisperRate == WHISPER_SAMPLE_RATE, "audio.h and whisper.cpp disagree on the sample rate");

void ContextDeleter::operator()(whisper_context* c) const { whisper_free(c); }

namespace {
void WhisperLog(ggml_log_level level, const char* text, void*) {
  if (level != GGML_LOG_LEVEL_WARN && level != GGML_LOG_LEVEL_ERROR) return;
  std::string msg(text);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  if (msg.empty()) return;
  Log(level == GGML_LOG_LEVEL_ERROR ? "error" : "warn", msg, {{"source", "whisper.cpp"}});
}

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\n\r") - b + 1);
}

class WhisperDecoder final : public Decoder {
 public:
  WhisperDecoder(whisper_context* ctx, whisper_state* state, bool multilingual, DecoderConfig config)
      : ctx_(ctx), state_(state), multilingual_(multilingual), config_(config) {}
  ~WhisperDecoder() override { whisper_free_state(state_); }

  DecodeResult Decode(const std::vector<float>& pcm, const DecodeOptions& o,
                      const std::function<bool()>& abort) override {
    // Every field left at whisper_full_default_params(GREEDY) is also what
    // whisper-cli uses by default.
    whisper_full_params p = whisper_full_default_params(WHISPER_SAMPLING_GREEDY);
    p.n_threads = config_.threads;
    p.print_progress = false;
    p.print_realtime = false;
    p.print_timestamps = false;
    const std::string language = !multilingual_ ? "en" : o.language.empty() ? "auto" : o.language;
    p.language = language.c_str();
    p.translate = multilingual_ && o.translate;
    p.initial_prompt = o.initial_prompt.c_str();
    if (!config_.temperature_fallback) p.temperature_inc = 0.0f;
    if (o.partial) {
      p.temperature_inc = 0.0f;
      p.greedy.best_of = 1;
      p.no_timestamps = true;
      p.single_segment = true;
    }
    p.abort_callback = [](void* data) { return (*static_cast<const std::function<bool()>*>(data))(); };
    p.abort_callback_user_data = const_cast<std::function<bool()>*>(&abort);

    DecodeResult r;
    const auto t0 = std::chrono::steady_clock::now();
    const int rc = whisper_full_with_state(ctx_, state_, p, pcm.data(), static_cast<int>(pcm.size()));
    r.decode_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (rc != 0) {
      r.aborted = abort();
      r.error = "whisper.cpp could not decode the audio (whisper_full error " + std::to_string(rc) + ")";
      return r;
    }
    const whisper_token eot = whisper_token_eot(ctx_);
    const int n = whisper_full_n_segments_from_state(state_);
    std::string text;
    for (int i = 0; i < n; ++i) {
      jota::v1::Segment s;
      s.set_start_s(whisper_full_get_segment_t0_from_state(state_, i) / 100.0);
      s.set_end_s(whisper_full_get_segment_t1_from_state(state_, i) / 100.0);
      s.set_text(whisper_full_get_segment_text_from_state(state_, i));
      s.set_no_speech_prob(whisper_full_get_segment_no_speech_prob_from_state(state_, i));
      double sum = 0.0;
      int count = 0;
      for (int t = 0, nt = whisper_full_n_tokens_from_state(state_, i); t < nt; ++t) {
        const whisper_token_data d = whisper_full_get_token_data_from_state(state_, i, t);
        if (d.id >= eot) continue;  // timestamps and other special tokens carry no text
        sum += d.p;
        ++count;
      }
      s.set_confidence(count > 0 ? static_cast<float>(sum / count) : 0.0f);
      text += s.text();
      r.segments.push_back(std::move(s));
    }
    r.text = Trim(text);
    r.language = whisper_lang_str(whisper_full_lang_id_from_state(state_));
    r.ok = true;
    return r;
  }

 private:
  whisper_context* ctx_;
  whisper_state* state_;
  bool multilingual_;
  DecoderConfig config_;
};

constexpr int kSileroWindow = 512;  // Silero's frame at 16 kHz
constexpr float kSileroThreshold = 0.5f;

class SileroClassifier final : public SpeechClassifier {
 public:
  explicit SileroClassifier(whisper_vad_context* vctx) : vctx_(vctx) {}
  ~SileroClassifier() override { whisper_vad_free(vctx_); }
  int frame_samples() const override { return kSileroWindow; }
  bool IsSpeech(const float* frame, float) override {
    if (!whisper_vad_detect_speech_no_reset(vctx_, frame, kSileroWindow) || whisper_vad_n_probs(vctx_) < 1) return false;
    return whisper_vad_probs(vctx_)[0] >= kSileroThreshold;
  }

 private:
  whisper_vad_context* vctx_;
};
}  // namespace

void InitBackend() { whisper_log_set(WhisperLog, nullptr); }

std::string SystemInfo() { return whisper_print_system_info(); }

std::unique_ptr<LoadedModel> LoadModel(const std::string& path, std::string* error) {
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

bool IsLanguage(const std::string& code) {
  // whisper_lang_id also accepts full names ("english"); the API takes codes only.
  const int id = whisper_lang_id(code.c_str());
  return id >= 0 && code == whisper_lang_str(id);
}

std::unique_ptr<Decoder> MakeWhisperDecoder(const LoadedModel& model, const DecoderConfig& config, std::string* error) {
  whisper_state* state = whisper_init_state(model.ctx.get());
  if (state == nullptr) {
    *error = "whisper.cpp could not allocate a decoding state (out of memory?)";
    return nullptr;
  }
  return std::make_unique<WhisperDecoder>(model.ctx.get(), state, model.multilingual, config);
}

std::unique_ptr<SpeechClassifier> MakeSileroClassifier(const std::string& path, int threads, std::string* error) {
  whisper_vad_context_params params = whisper_vad_default_context_params();
  params.n_threads = threads;
  params.use_gpu = false;
  whisper_vad_context* vctx = whisper_vad_init_from_file_with_params(path.c_str(), params);
  if (vctx == nullptr) {
    *error = "whisper.cpp could not load the Silero VAD model " + path;
    return nullptr;
  }
  // The window size is not exposed: one window of silence must give one probability.
  std::vector<float> silence(kSileroWindow, 0.0f);
  if (!whisper_vad_detect_speech(vctx, silence.data(), kSileroWindow) || whisper_vad_n_probs(vctx) != 1) {
    whisper_vad_free(vctx);
    *error = "the VAD model " + path + " does not take " + std::to_string(kSileroWindow) + "-sample frames at 16 kHz";
    return nullptr;
  }
  whisper_vad_reset_state(vctx);
  return std::make_unique<SileroClassifier>(vctx);
}

}  // namespace jota::transcription
