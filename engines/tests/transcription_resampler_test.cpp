// Sample-rate conversion to 16 kHz: tones keep their frequency and level,
// what would alias is filtered out, and chunking never changes the output.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "audio.h"

using namespace jota::transcription;

namespace {

std::vector<float> Tone(double hz, int rate, double seconds, double amplitude = 0.5) {
  std::vector<float> v(static_cast<size_t>(rate * seconds));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(amplitude * std::sin(2 * M_PI * hz * i / rate));
  return v;
}

std::vector<float> Resample(const std::vector<float>& in, int rate) {
  Resampler r(rate, kWhisperRate);
  std::vector<float> out;
  r.Push(in.data(), in.size(), &out);
  r.Flush(&out);
  return out;
}

// Level (dB relative to full-scale sine) of the `hz` component in the middle
// of `v` (the filter's start-up and tail are left out), by correlation.
double LevelDb(const std::vector<float>& v, double hz, int rate) {
  const size_t from = v.size() / 4, to = v.size() * 3 / 4;
  double re = 0, im = 0;
  for (size_t i = from; i < to; ++i) {
    re += v[i] * std::cos(2 * M_PI * hz * i / rate);
    im += v[i] * std::sin(2 * M_PI * hz * i / rate);
  }
  const double amplitude = 2 * std::sqrt(re * re + im * im) / static_cast<double>(to - from);
  return 20 * std::log10(amplitude + 1e-12);
}

double RmsDb(const std::vector<float>& v) {
  const size_t from = v.size() / 4, to = v.size() * 3 / 4;
  double e = 0;
  for (size_t i = from; i < to; ++i) e += v[i] * v[i];
  return 10 * std::log10(e / static_cast<double>(to - from) + 1e-20);
}

}  // namespace

TEST(TranscriptionResampler, SixteenKilohertzPassesThroughUntouched) {
  const auto in = Tone(440, 16000, 0.5);
  std::string bytes(reinterpret_cast<const char*>(in.data()), in.size() * 4);
  std::vector<float> out;
  std::string error;
  ASSERT_TRUE(ConvertAll(bytes, {16000, SampleType::kFloat32, 1}, &out, &error)) << error;
  EXPECT_EQ(out, in);
}

TEST(TranscriptionResampler, OutputLengthFollowsTheRatio) {
  for (int rate : {8000, 11025, 22050, 44100, 48000, 96000, 44101}) {
    const std::vector<float> in(static_cast<size_t>(rate) + 7, 0.1f);
    const auto out = Resample(in, rate);
    const size_t expected = static_cast<size_t>((static_cast<int64_t>(in.size()) * 16000 + rate - 1) / rate);
    EXPECT_EQ(out.size(), expected) << rate << " Hz";
  }
}

TEST(TranscriptionResampler, TonesKeepTheirFrequencyAndLevel) {
  for (int rate : {8000, 22050, 44100, 48000}) {
    for (double hz : {300.0, 1000.0, 3000.0}) {
      const auto out = Resample(Tone(hz, rate, 1.0), rate);
      const double level = LevelDb(out, hz, 16000);
      EXPECT_NEAR(level, 20 * std::log10(0.5), 0.1) << hz << " Hz from " << rate << " Hz";
      // Everything else (distortion, images) is far below.
      const double total = RmsDb(out), tone_rms = level - 3.0103;
      EXPECT_NEAR(total, tone_rms, 0.01) << hz << " Hz from " << rate << " Hz";
    }
  }
}

TEST(TranscriptionResampler, PassBandReachesSixKilohertz) {
  const auto out = Resample(Tone(6000, 48000, 1.0), 48000);
  EXPECT_NEAR(LevelDb(out, 6000, 16000), 20 * std::log10(0.5), 0.1);
}

TEST(TranscriptionResampler, DownsamplingRemovesWhatWouldAlias) {
  // Above the new Nyquist frequency (8 kHz) a tone would fold back into the
  // speech band (12 kHz -> 4 kHz, 9 kHz -> 7 kHz): it has to be filtered out.
  for (double hz : {9000.0, 12000.0, 20000.0}) {
    const auto out = Resample(Tone(hz, 48000, 1.0), 48000);
    EXPECT_LT(RmsDb(out) - 20 * std::log10(0.5), -70.0) << hz << " Hz";
  }
  const auto out = Resample(Tone(15000, 44100, 1.0), 44100);
  EXPECT_LT(RmsDb(out) - 20 * std::log10(0.5), -70.0);
}

TEST(TranscriptionResampler, ChunkingDoesNotChangeTheOutput) {
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.0f, 0.2f);
  std::vector<float> in(44100 * 2);
  for (float& x : in) x = noise(rng);
  const auto whole = Resample(in, 44100);

  Resampler r(44100, 16000);
  std::vector<float> pieces;
  std::uniform_int_distribution<size_t> size(0, 3000);
  for (size_t pos = 0; pos < in.size();) {
    const size_t n = std::min(in.size() - pos, size(rng));
    r.Push(in.data() + pos, n, &pieces);
    pos += n;
  }
  r.Flush(&pieces);
  EXPECT_EQ(pieces, whole);
}

TEST(TranscriptionResampler, StereoIsDownmixedBeforeResampling) {
  const auto left = Tone(1000, 48000, 0.5);
  std::string bytes;
  for (float l : left) {
    const int16_t s = static_cast<int16_t>(std::lround(l * 32767));
    const int16_t silent = 0;
    bytes.append(reinterpret_cast<const char*>(&s), 2);
    bytes.append(reinterpret_cast<const char*>(&silent), 2);
  }
  std::vector<float> out;
  std::string error;
  ASSERT_TRUE(ConvertAll(bytes, {48000, SampleType::kInt16, 2}, &out, &error)) << error;
  EXPECT_NEAR(LevelDb(out, 1000, 16000), 20 * std::log10(0.25), 0.1);  // one of two channels: half the level
}
