// The model layer: every whisper.cpp call lives here.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "jota/v1/transcription.pb.h"
#include "vad.h"

struct whisper_context;
struct whisper_state;

namespace jota::transcription {

struct ContextDeleter { void operator()(whisper_context* c) const; };
using ContextPtr = std::unique_ptr<whisper_context, ContextDeleter>;

void InitBackend();
std::string SystemInfo();

struct LoadedModel {
  // The weights only: each stream gets its own whisper_state (whisper_init_state).
  ContextPtr ctx;
  std::string path;
  std::string type;        // tiny | base | ...
  bool multilingual = false;
};

std::unique_ptr<LoadedModel> LoadModel(const std::string& path, std::string* error);

// Every language the model can transcribe ("en" only for .en models).
std::vector<std::string> Languages(const LoadedModel& m);
bool IsLanguage(const std::string& code);  // a code whisper.cpp knows ("en", "de", ...)

// Engine-wide decoding settings (flags).
struct DecoderConfig {
  int threads = 1;
  // whisper-cli's default: when a pass looks unreliable (entropy, log
  // probability), decode again at temperature +0.2 up to 1.0. Turning it off
  // (whisper-cli -nf) bounds the work per utterance to one pass.
  bool temperature_fallback = true;
};

struct DecodeOptions {
  std::string language;  // "" = detect (multilingual models); English-only models always use "en"
  bool translate = false;
  std::string initial_prompt;
  // A partial hypothesis: one greedy pass without timestamps or fallback, so
  // its cost is bounded and it never touches the sampler state that finals use.
  bool partial = false;
};

struct DecodeResult {
  bool ok = false;
  bool aborted = false;
  std::string error;
  std::vector<jota::v1::Segment> segments;  // times relative to the decoded audio
  std::string text;                         // the segments' text, trimmed
  std::string language;
  double decode_ms = 0;
};

// One decoding stream on the shared model. Implementations are used by one
// thread at a time.
class Decoder {
 public:
  virtual ~Decoder() = default;
  // `abort` is polled while decoding; true stops it (result.aborted).
  virtual DecodeResult Decode(const std::vector<float>& pcm, const DecodeOptions& options,
                              const std::function<bool()>& abort) = 0;
};

// A whisper_state of its own on the shared context: greedy decoding with
// whisper-cli's defaults, so results equal `whisper-cli -bs 1` on the same
// audio. A fresh state per lease (never reused) because whisper.cpp seeds the
// first decoder's sampler only when a state is created, and a reused state
// would make fallback decoding depend on earlier requests.
std::unique_ptr<Decoder> MakeWhisperDecoder(const LoadedModel& model, const DecoderConfig& config, std::string* error);

// whisper.cpp's Silero VAD as a frame classifier (512-sample frames, speech
// at probability >= 0.5, as whisper.cpp's defaults). Each stream needs its
// own: the LSTM state is per context.
std::unique_ptr<SpeechClassifier> MakeSileroClassifier(const std::string& path, int threads, std::string* error);

}  // namespace jota::transcription
