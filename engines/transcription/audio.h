// Audio in: PCM bytes (raw or inside a WAV file) to whisper's input, 16 kHz
// mono float. Pure C++, no whisper.cpp and no gRPC, so it is unit-tested alone.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace jota::transcription {

// whisper.cpp's WHISPER_SAMPLE_RATE (model.cpp checks they agree).
constexpr int kWhisperRate = 16000;
constexpr int kMinSampleRate = 8000;
constexpr int kMaxSampleRate = 192000;
constexpr int kMaxChannels = 8;

enum class SampleType { kUint8, kInt16, kInt24, kInt32, kFloat32 };

struct PcmFormat {
  int sample_rate = kWhisperRate;
  SampleType type = SampleType::kInt16;
  int channels = 1;

  int bytes_per_sample() const;
  int bytes_per_frame() const { return bytes_per_sample() * channels; }
};

// "" when the engine can take this format, otherwise why not.
std::string CheckFormat(const PcmFormat& format);

struct WavAudio {
  PcmFormat format;
  std::string_view data;  // the samples, inside the parsed file's bytes
};

// RIFF/WAVE with PCM (8/16/24/32-bit integer) or IEEE float (32-bit), plain
// or WAVE_FORMAT_EXTENSIBLE. Unknown chunks are skipped; a data chunk that
// claims more bytes than the file holds is read up to the end (streaming
// writers leave its size unset). false with the reason.
bool ParseWav(std::string_view file, WavAudio* out, std::string* error);

// Sample-rate conversion by band-limited interpolation: a Kaiser-windowed
// sinc, tabulated once and interpolated linearly between table points
// (J. O. Smith's "digital audio resampling" method). Its cut-off follows the
// lower of the two rates, so downsampling also filters out what would alias.
// Streaming: output does not depend on how the input is split into chunks.
class Resampler {
 public:
  Resampler(int in_rate, int out_rate);
  void Push(const float* in, size_t n, std::vector<float>* out);
  // End of input: emits the remaining output (the input is taken as silent
  // beyond its end). Total output = ceil(input samples * out / in).
  void Flush(std::vector<float>* out);

 private:
  // Every output sample whose taps lie below `available`, up to `max_count` in all.
  void Emit(int64_t available, int64_t max_count, std::vector<float>* out);
  float Kernel(double distance) const;  // distance in input samples

  int64_t in_rate_, out_rate_;
  double scale_;            // cut-off relative to the input rate's Nyquist frequency
  int half_width_;          // taps each side, in input samples
  std::vector<float> table_;
  std::vector<float> history_;  // input samples from absolute index history_start_
  int64_t history_start_;
  int64_t in_count_ = 0;
  int64_t out_count_ = 0;
};

// Bytes in a given format to 16 kHz mono float, chunk by chunk. Each chunk
// must hold whole frames (a sample for every channel), so a PCM16 chunk with
// an odd byte count is refused rather than silently realigned.
class AudioConverter {
 public:
  explicit AudioConverter(const PcmFormat& format);
  bool Push(std::string_view bytes, std::vector<float>* out, std::string* error);
  void Flush(std::vector<float>* out);
  const PcmFormat& format() const { return format_; }

 private:
  PcmFormat format_;
  Resampler resampler_;
  bool passthrough_;
  std::vector<float> mono_;
};

// A whole buffer at once (Transcribe).
bool ConvertAll(std::string_view bytes, const PcmFormat& format, std::vector<float>* out, std::string* error);

}  // namespace jota::transcription
