#include "settings.h"

namespace jota::transcription {

namespace {

constexpr size_t kMaxPromptBytes = 4096;
constexpr size_t kMaxRequestIdBytes = 256;

grpc::Status Invalid(const std::string& msg) { return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg); }

// proto3 cannot tell 0 from unset, so 0 means "the default".
grpc::Status IntSetting(const std::string& field, int value, int def, int min, int max, int* out) {
  if (value == 0) {
    *out = def;
    return grpc::Status::OK;
  }
  if (value < min || value > max)
    return Invalid(field + " must be " + std::to_string(min) + ".." + std::to_string(max) + " (got " +
                   std::to_string(value) + "; 0 = default " + std::to_string(def) + ")");
  *out = value;
  return grpc::Status::OK;
}

grpc::Status BuildFormat(const std::string& field, const jota::v1::AudioFormat& f, PcmFormat* out) {
  if (f.sample_rate() == 0) return Invalid(field + ".sample_rate is required (16000 is native)");
  switch (f.encoding()) {
    case jota::v1::AUDIO_ENCODING_PCM16LE: out->type = SampleType::kInt16; break;
    case jota::v1::AUDIO_ENCODING_FLOAT32LE: out->type = SampleType::kFloat32; break;
    case jota::v1::AUDIO_ENCODING_UNSPECIFIED:
      return Invalid(field + ".encoding is required (AUDIO_ENCODING_PCM16LE or AUDIO_ENCODING_FLOAT32LE)");
    default: return Invalid(field + ".encoding " + std::to_string(f.encoding()) + " is unknown");
  }
  out->sample_rate = f.sample_rate();
  out->channels = f.channels() == 0 ? 1 : f.channels();
  if (std::string why = CheckFormat(*out); !why.empty()) return Invalid(field + ": " + why);
  return grpc::Status::OK;
}

grpc::Status BuildDecode(const std::string& prefix, const std::string& language, bool translate,
                         const std::string& prompt, bool multilingual, DecodeOptions* out) {
  if (language.empty() || language == "auto") {
    out->language.clear();
  } else if (!IsLanguage(language)) {
    return Invalid(prefix + "language '" + language + "' is not a language code whisper knows (e.g. 'en', 'de'; '' or 'auto' detects)");
  } else if (!multilingual && language != "en") {
    return Invalid(prefix + "language '" + language + "' needs a multilingual model; the loaded one is English-only");
  } else {
    out->language = language;
  }
  if (translate && !multilingual) return Invalid(prefix + "translate needs a multilingual model; the loaded one is English-only");
  out->translate = translate;
  if (prompt.size() > kMaxPromptBytes)
    return Invalid(prefix + "initial_prompt is " + std::to_string(prompt.size()) + " bytes (at most " +
                   std::to_string(kMaxPromptBytes) + ")");
  out->initial_prompt = prompt;
  return grpc::Status::OK;
}

grpc::Status CheckRequestId(const std::string& field, const std::string& id) {
  if (id.size() > kMaxRequestIdBytes)
    return Invalid(field + " is longer than " + std::to_string(kMaxRequestIdBytes) + " bytes");
  return grpc::Status::OK;
}

}  // namespace

grpc::Status BuildStreamSettings(const jota::v1::StreamConfig& c, bool multilingual, StreamSettings* out) {
  if (!c.has_format()) return Invalid("config.format is required (sample_rate, encoding, channels)");
  grpc::Status st = BuildFormat("config.format", c.format(), &out->format);
  if (st.ok()) st = BuildDecode("config.", c.language(), c.translate(), c.initial_prompt(), multilingual, &out->decode);
  if (st.ok()) st = CheckRequestId("config.request_id", c.request_id());
  if (!st.ok()) return st;
  out->request_id = c.request_id();

  if (c.partial_interval_ms() < 0 || (c.partial_interval_ms() > 0 && c.partial_interval_ms() < 100) ||
      c.partial_interval_ms() > 60000)
    return Invalid("config.partial_interval_ms must be 0 (no partials) or 100..60000 (got " +
                   std::to_string(c.partial_interval_ms()) + ")");
  out->partial_interval_ms = c.partial_interval_ms();

  out->vad = c.vad().enabled();
  if (!out->vad) return grpc::Status::OK;
  const jota::v1::VadConfig& v = c.vad();
  VadSettings& s = out->vad_settings;
  const VadSettings def;
  if (v.threshold_db() < 0.0f || v.threshold_db() > 60.0f || v.threshold_db() != v.threshold_db())
    return Invalid("config.vad.threshold_db must be 0..60 dB (got " + std::to_string(v.threshold_db()) +
                   "; 0 = default " + std::to_string(static_cast<int>(def.threshold_db)) + ")");
  s.threshold_db = v.threshold_db() == 0.0f ? def.threshold_db : v.threshold_db();
  // An utterance plus its pre-roll stays inside whisper's 30-second window.
  if (st = IntSetting("config.vad.hangover_ms", v.hangover_ms(), def.hangover_ms, 50, 10000, &s.hangover_ms); !st.ok()) return st;
  if (st = IntSetting("config.vad.min_speech_ms", v.min_speech_ms(), def.min_speech_ms, 10, 10000, &s.min_speech_ms); !st.ok()) return st;
  if (st = IntSetting("config.vad.max_utterance_ms", v.max_utterance_ms(), def.max_utterance_ms, 1000, 28000, &s.max_utterance_ms); !st.ok()) return st;
  if (st = IntSetting("config.vad.pre_roll_ms", v.pre_roll_ms(), def.pre_roll_ms, 10, 1000, &s.pre_roll_ms); !st.ok()) return st;
  // A long utterance is cut at its quietest point in its second half, and
  // that point must lie in speech: with a longer hangover the utterance can
  // reach its maximum inside a pause the hangover is meant to bridge.
  // (Both defaults fit any value of the other.) A pre-roll longer than the
  // hangover is fine: the session keeps it out of the previous utterance.
  if (2 * static_cast<int64_t>(s.hangover_ms) > s.max_utterance_ms)
    return Invalid("config.vad.hangover_ms (" + std::to_string(s.hangover_ms) +
                   ") must be at most half of config.vad.max_utterance_ms (" + std::to_string(s.max_utterance_ms) + ")");
  return grpc::Status::OK;
}

grpc::Status BuildTranscribeSettings(const jota::v1::TranscribeRequest& r, bool multilingual, TranscribeSettings* out) {
  switch (r.audio_case()) {
    case jota::v1::TranscribeRequest::kWav: {
      WavAudio wav;
      std::string error;
      if (!ParseWav(r.wav(), &wav, &error)) return Invalid("wav: " + error);
      out->format = wav.format;
      out->audio = wav.data;
      break;
    }
    case jota::v1::TranscribeRequest::kPcm: {
      if (!r.has_format()) return Invalid("format is required with pcm (sample_rate, encoding, channels)");
      if (grpc::Status st = BuildFormat("format", r.format(), &out->format); !st.ok()) return st;
      if (r.pcm().size() % out->format.bytes_per_frame() != 0)
        return Invalid("pcm holds " + std::to_string(r.pcm().size()) + " bytes, not a whole number of " +
                       std::to_string(out->format.bytes_per_frame()) + "-byte frames");
      out->audio = r.pcm();
      break;
    }
    case jota::v1::TranscribeRequest::AUDIO_NOT_SET: return Invalid("no audio: set wav (a WAV file) or pcm (with format)");
  }
  if (out->audio.empty()) return Invalid("the audio holds no samples");
  if (grpc::Status st = BuildDecode("", r.language(), r.translate(), r.initial_prompt(), multilingual, &out->decode); !st.ok())
    return st;
  if (grpc::Status st = CheckRequestId("request_id", r.request_id()); !st.ok()) return st;
  out->request_id = r.request_id();
  return grpc::Status::OK;
}

}  // namespace jota::transcription
