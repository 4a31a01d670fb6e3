// Request settings, validated once when built from the wire messages: the
// rest of the engine only ever sees settings that are known to be good.
#pragma once

#include <string>

#include <grpcpp/grpcpp.h>

#include "audio.h"
#include "jota/v1/transcription.pb.h"
#include "model.h"
#include "vad.h"

namespace jota::transcription {

struct StreamSettings {
  PcmFormat format;
  DecodeOptions decode;
  bool vad = false;  // off: the whole stream is one utterance
  VadSettings vad_settings;
  int partial_interval_ms = 0;  // 0: no partials
  std::string request_id;
};

struct TranscribeSettings {
  PcmFormat format;
  std::string_view audio;  // the samples, inside the request
  DecodeOptions decode;
  std::string request_id;
};

// INVALID_ARGUMENT naming the field and the reason, or OK. `multilingual`:
// whether the loaded model is (English-only models refuse other languages).
grpc::Status BuildStreamSettings(const jota::v1::StreamConfig& config, bool multilingual, StreamSettings* out);
grpc::Status BuildTranscribeSettings(const jota::v1::TranscribeRequest& req, bool multilingual, TranscribeSettings* out);

}  // namespace jota::transcription
