// Engine-wide counters, reported by Info.
#pragma once

#include <atomic>
#include <cstdint>

namespace jota::transcription {

struct Counters {
  std::atomic<uint64_t> streams{0};
  std::atomic<uint64_t> files{0};
  std::atomic<uint64_t> utterances{0};     // finals sent
  std::atomic<uint64_t> audio_samples{0};  // 16 kHz samples received
  std::atomic<uint64_t> partials{0};
  std::atomic<uint64_t> partials_skipped{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> cancellations{0};
};

}  // namespace jota::transcription
