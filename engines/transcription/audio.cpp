#include "audio.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace jota::transcription {

namespace {

uint16_t U16(const char* p) {
  return static_cast<uint16_t>(static_cast<uint8_t>(p[0]) | static_cast<uint8_t>(p[1]) << 8);
}
uint32_t U32(const char* p) { return U16(p) | static_cast<uint32_t>(U16(p + 2)) << 16; }

const char* TypeName(SampleType t) {
  switch (t) {
    case SampleType::kUint8: return "8-bit PCM";
    case SampleType::kInt16: return "16-bit PCM";
    case SampleType::kInt24: return "24-bit PCM";
    case SampleType::kInt32: return "32-bit PCM";
    case SampleType::kFloat32: return "32-bit float";
  }
  return "?";
}

// The same scale factors as miniaudio (which whisper-cli reads files with), so
// both hand whisper.cpp identical floats for the same file.
float Sample(const char* p, SampleType t) {
  switch (t) {
    case SampleType::kUint8: return (static_cast<uint8_t>(*p) - 128) / 128.0f;
    case SampleType::kInt16: return static_cast<int16_t>(U16(p)) / 32768.0f;
    case SampleType::kInt24: {
      int32_t v = static_cast<int32_t>(static_cast<uint32_t>(U16(p)) << 8 | static_cast<uint32_t>(static_cast<uint8_t>(p[2])) << 24) >> 8;
      return static_cast<float>(v / 8388608.0);
    }
    case SampleType::kInt32: return static_cast<float>(static_cast<int32_t>(U32(p)) / 2147483648.0);
    case SampleType::kFloat32: {
      uint32_t bits = U32(p);
      float v;
      std::memcpy(&v, &bits, sizeof v);
      // NaN or infinity would poison the whole mel spectrogram.
      return std::isfinite(v) ? v : 0.0f;
    }
  }
  return 0.0f;
}

// Frames (all channels) to mono by averaging the channels.
void Downmix(std::string_view bytes, const PcmFormat& f, std::vector<float>* out) {
  const int bps = f.bytes_per_sample();
  const size_t frames = bytes.size() / f.bytes_per_frame();
  const char* p = bytes.data();
  out->reserve(out->size() + frames);
  for (size_t i = 0; i < frames; ++i) {
    if (f.channels == 1) {
      out->push_back(Sample(p, f.type));
      p += bps;
      continue;
    }
    float sum = 0.0f;
    for (int c = 0; c < f.channels; ++c, p += bps) sum += Sample(p, f.type);
    out->push_back(sum / f.channels);
  }
}

double BesselI0(double x) {
  double sum = 1.0, term = 1.0;
  for (int k = 1; k < 64; ++k) {
    term *= (x / (2.0 * k)) * (x / (2.0 * k));
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

// Resampling filter: 32 zero crossings each side and a Kaiser window with
// beta 8.6 give about 85 dB of stop-band rejection; the pass band ends at 92%
// of the lower Nyquist frequency so the transition band is over by Nyquist.
constexpr int kZeroCrossings = 32;
constexpr int kTableResolution = 512;  // table points per zero crossing
constexpr double kRolloff = 0.92;
constexpr double kKaiserBeta = 8.6;

}  // namespace

int PcmFormat::bytes_per_sample() const {
  switch (type) {
    case SampleType::kUint8: return 1;
    case SampleType::kInt16: return 2;
    case SampleType::kInt24: return 3;
    case SampleType::kInt32:
    case SampleType::kFloat32: return 4;
  }
  return 1;
}

std::string CheckFormat(const PcmFormat& f) {
  if (f.sample_rate < kMinSampleRate || f.sample_rate > kMaxSampleRate)
    return "sample rate " + std::to_string(f.sample_rate) + " Hz is not supported (" + std::to_string(kMinSampleRate) +
           ".." + std::to_string(kMaxSampleRate) + " Hz; 16000 is native)";
  if (f.channels < 1 || f.channels > kMaxChannels)
    return std::to_string(f.channels) + " channels are not supported (1.." + std::to_string(kMaxChannels) + ")";
  return "";
}

bool ParseWav(std::string_view file, WavAudio* out, std::string* error) {
  if (file.size() < 12 || file.compare(0, 4, "RIFF") != 0 || file.compare(8, 4, "WAVE") != 0) {
    *error = "not a WAV file (no RIFF/WAVE header)";
    return false;
  }
  bool have_fmt = false;
  size_t pos = 12;
  while (pos + 8 <= file.size()) {
    std::string_view id = file.substr(pos, 4);
    const uint32_t size = U32(file.data() + pos + 4);
    const size_t body = pos + 8;
    const size_t left = file.size() - body;
    if (id == "fmt ") {
      if (size < 16 || size > left) {
        *error = "WAV fmt chunk is truncated";
        return false;
      }
      const char* p = file.data() + body;
      uint16_t tag = U16(p);
      const int channels = U16(p + 2);
      const uint32_t rate = U32(p + 4);
      const int block_align = U16(p + 12);
      const int bits = U16(p + 14);
      if (tag == 0xFFFE) {  // WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
        if (size < 40) {
          *error = "WAV extensible fmt chunk is truncated";
          return false;
        }
        tag = U16(p + 24);
      }
      if (tag == 1 && (bits == 8 || bits == 16 || bits == 24 || bits == 32)) {
        out->format.type = bits == 8    ? SampleType::kUint8
                           : bits == 16 ? SampleType::kInt16
                           : bits == 24 ? SampleType::kInt24
                                        : SampleType::kInt32;
      } else if (tag == 3 && bits == 32) {
        out->format.type = SampleType::kFloat32;
      } else if (tag == 1 || tag == 3) {
        *error = "WAV with " + std::to_string(bits) + "-bit " + (tag == 1 ? "PCM" : "float") +
                 " samples is not supported (PCM 8/16/24/32-bit or 32-bit float)";
        return false;
      } else {
        *error = "WAV encoding " + std::to_string(tag) +
                 " is not supported (PCM 8/16/24/32-bit or 32-bit float; compressed WAV is not)";
        return false;
      }
      out->format.channels = channels;
      out->format.sample_rate = rate > static_cast<uint32_t>(kMaxSampleRate) ? kMaxSampleRate + 1 : static_cast<int>(rate);
      if (std::string why = CheckFormat(out->format); !why.empty()) {
        *error = "WAV: " + why;
        return false;
      }
      if (block_align != out->format.bytes_per_frame()) {
        *error = "WAV fmt chunk is inconsistent (block align " + std::to_string(block_align) + " for " +
                 std::to_string(channels) + " channel(s) of " + TypeName(out->format.type) + ")";
        return false;
      }
      have_fmt = true;
    } else if (id == "data") {
      if (!have_fmt) {
        *error = "WAV data chunk comes before its fmt chunk";
        return false;
      }
      // Writers that stream (and cannot seek back) leave the size at 0xFFFFFFFF.
      size_t n = std::min<size_t>(size, left);
      n -= n % out->format.bytes_per_frame();  // a truncated file may end inside a frame
      out->data = file.substr(body, n);
      return true;
    }
    pos = body + size + (size & 1);  // chunks are padded to an even size
    if (pos < body) break;           // size overflow
  }
  *error = have_fmt ? "WAV file has no data chunk" : "WAV file has no fmt chunk";
  return false;
}

Resampler::Resampler(int in_rate, int out_rate) : in_rate_(in_rate), out_rate_(out_rate) {
  scale_ = std::min(1.0, static_cast<double>(out_rate) / in_rate) * kRolloff;
  half_width_ = static_cast<int>(std::ceil(kZeroCrossings / scale_));
  table_.resize(kZeroCrossings * kTableResolution + 2);
  const double i0_beta = BesselI0(kKaiserBeta);
  for (size_t k = 0; k < table_.size(); ++k) {
    const double u = static_cast<double>(k) / kTableResolution;  // in zero crossings
    const double r = u / kZeroCrossings;
    if (r >= 1.0) {
      table_[k] = 0.0f;
      continue;
    }
    const double sinc = k == 0 ? 1.0 : std::sin(M_PI * u) / (M_PI * u);
    table_[k] = static_cast<float>(sinc * BesselI0(kKaiserBeta * std::sqrt(1.0 - r * r)) / i0_beta);
  }
  history_start_ = 0;
}

float Resampler::Kernel(double distance) const {
  const double pos = std::abs(distance) * scale_ * kTableResolution;
  const size_t k = static_cast<size_t>(pos);
  if (k + 1 >= table_.size()) return 0.0f;
  const double t = pos - k;
  return static_cast<float>(scale_ * (table_[k] + t * (table_[k + 1] - table_[k])));
}

void Resampler::Emit(int64_t available, int64_t max_count, std::vector<float>* out) {
  const int64_t hist_end = history_start_ + static_cast<int64_t>(history_.size());
  while (out_count_ < max_count) {
    // Output sample n sits at input position n * in / out, kept exact as a
    // fraction so that long streams do not drift.
    const int64_t num = out_count_ * in_rate_;
    const int64_t center = num / out_rate_;
    const double frac = static_cast<double>(num - center * out_rate_) / out_rate_;
    if (center + half_width_ >= available) break;
    double acc = 0.0;
    for (int64_t i = center - half_width_ + 1; i <= center + half_width_; ++i) {
      if (i < history_start_ || i >= hist_end) continue;  // silence before the start and after the end
      acc += Kernel(static_cast<double>(center - i) + frac) * history_[i - history_start_];
    }
    out->push_back(static_cast<float>(acc));
    ++out_count_;
  }
  // Drop the input no future output reaches.
  const int64_t keep_from = out_count_ * in_rate_ / out_rate_ - half_width_ + 1;
  if (keep_from - history_start_ > 8192) {
    history_.erase(history_.begin(), history_.begin() + (keep_from - history_start_));
    history_start_ = keep_from;
  }
}

void Resampler::Push(const float* in, size_t n, std::vector<float>* out) {
  history_.insert(history_.end(), in, in + n);
  in_count_ += static_cast<int64_t>(n);
  Emit(in_count_, INT64_MAX, out);
}

void Resampler::Flush(std::vector<float>* out) {
  Emit(INT64_MAX, (in_count_ * out_rate_ + in_rate_ - 1) / in_rate_, out);
}

AudioConverter::AudioConverter(const PcmFormat& format)
    : format_(format), resampler_(format.sample_rate, kWhisperRate), passthrough_(format.sample_rate == kWhisperRate) {}

bool AudioConverter::Push(std::string_view bytes, std::vector<float>* out, std::string* error) {
  const int frame = format_.bytes_per_frame();
  if (bytes.size() % frame != 0) {
    *error = "audio chunk of " + std::to_string(bytes.size()) + " bytes is not a whole number of " +
             std::to_string(frame) + "-byte frames (" + TypeName(format_.type) + ", " + std::to_string(format_.channels) +
             " channel(s))";
    return false;
  }
  if (passthrough_) {
    Downmix(bytes, format_, out);
    return true;
  }
  mono_.clear();
  Downmix(bytes, format_, &mono_);
  resampler_.Push(mono_.data(), mono_.size(), out);
  return true;
}

void AudioConverter::Flush(std::vector<float>* out) {
  if (!passthrough_) resampler_.Flush(out);
}

bool ConvertAll(std::string_view bytes, const PcmFormat& format, std::vector<float>* out, std::string* error) {
  AudioConverter converter(format);
  if (!converter.Push(bytes, out, error)) return false;
  converter.Flush(out);
  return true;
}

}  // namespace jota::transcription
