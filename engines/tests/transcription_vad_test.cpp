// The energy VAD on synthetic audio with known truth: boundaries, hangover,
// minimum speech, the adaptive noise floor and the cut of long utterances.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "vad.h"

using namespace jota::transcription;

namespace {

constexpr int kRate = 16000;

// Room noise at `noise_db` dBFS, plus "speech" at `speech_db` in the given
// [start, end) spans (s): a voiced-like harmonic tone that pauses for 40 ms
// every 300 ms (between syllables) and ends with a full syllable.
struct Scene {
  double seconds = 6.0;
  double noise_db = -50.0;
  double speech_db = -20.0;
  std::vector<std::pair<double, double>> speech;
  unsigned seed = 1;

  std::vector<float> Render() const {
    std::vector<float> v(static_cast<size_t>(seconds * kRate));
    std::mt19937 rng(seed);
    std::normal_distribution<float> noise(0.0f, static_cast<float>(std::pow(10.0, noise_db / 20.0)));
    const double amp = std::pow(10.0, speech_db / 20.0) * std::sqrt(2.0) / std::sqrt(3.0);
    for (size_t i = 0; i < v.size(); ++i) {
      const double t = static_cast<double>(i) / kRate;
      double s = 0.0;
      for (const auto& [a, b] : speech) {
        if (t < a || t >= b) continue;
        // Syllables are counted back from the end; the span starts and ends in one.
        const bool pause = t - a > 0.04 && b - t > 0.3 && std::fmod(b - t, 0.3) > 0.26;
        if (pause) continue;
        for (int h = 1; h <= 3; ++h) s += amp * std::sin(2 * M_PI * 150.0 * h * t);
      }
      v[i] = static_cast<float>(s) + noise(rng);
    }
    return v;
  }
};

struct Detection {
  std::vector<VadEvent> events;
  std::string Describe() const {
    std::string out;
    for (const auto& e : events) {
      out += e.type == VadEvent::Type::kSpeechStarted ? "+" : "-";
      out += std::to_string(static_cast<double>(e.sample) / kRate).substr(0, 5);
      if (e.cut) out += "(cut)";
      out += " ";
    }
    return out;
  }
};

Detection Detect(const std::vector<float>& audio, VadSettings s = {}, size_t chunk = 1234) {
  VoiceActivityDetector vad(s, std::make_unique<EnergyClassifier>(s.threshold_db));
  Detection r;
  for (size_t pos = 0; pos < audio.size(); pos += chunk)
    vad.Push(audio.data() + pos, std::min(chunk, audio.size() - pos), &r.events);
  vad.Finish(&r.events);
  return r;
}

// Started/ended pairs, in seconds.
std::vector<std::pair<double, double>> Utterances(const Detection& r) {
  std::vector<std::pair<double, double>> out;
  for (size_t i = 0; i + 1 < r.events.size(); i += 2) {
    EXPECT_EQ(r.events[i].type, VadEvent::Type::kSpeechStarted) << r.Describe();
    EXPECT_EQ(r.events[i + 1].type, VadEvent::Type::kSpeechEnded) << r.Describe();
    out.emplace_back(static_cast<double>(r.events[i].sample) / kRate, static_cast<double>(r.events[i + 1].sample) / kRate);
  }
  EXPECT_EQ(r.events.size() % 2, 0u) << r.Describe();
  return out;
}

}  // namespace

TEST(TranscriptionVad, FindsEachUtteranceWithinAFrameOrTwo) {
  Scene scene;
  scene.speech = {{1.0, 2.2}, {3.5, 4.6}};
  const Detection r = Detect(scene.Render());
  const auto u = Utterances(r);
  ASSERT_EQ(u.size(), 2u) << r.Describe();
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(u[i].first, scene.speech[i].first, 0.02) << r.Describe();
    EXPECT_NEAR(u[i].second, scene.speech[i].second, 0.02) << r.Describe();
  }
}

TEST(TranscriptionVad, ChunkSizesDoNotChangeTheEvents) {
  Scene scene;
  scene.speech = {{0.7, 1.9}, {2.6, 3.1}, {4.0, 5.5}};
  const auto audio = scene.Render();
  const std::string one = Detect(audio, {}, audio.size()).Describe();
  for (size_t chunk : {1ul, 159ul, 160ul, 161ul, 4096ul}) EXPECT_EQ(Detect(audio, {}, chunk).Describe(), one) << chunk;
}

TEST(TranscriptionVad, GapsShorterThanTheHangoverAreBridged) {
  Scene scene;
  scene.speech = {{1.0, 2.0}, {2.3, 3.0}};  // 300 ms pause
  VadSettings s;
  s.hangover_ms = 500;
  auto u = Utterances(Detect(scene.Render(), s));
  ASSERT_EQ(u.size(), 1u);
  EXPECT_NEAR(u[0].first, 1.0, 0.02);
  EXPECT_NEAR(u[0].second, 3.0, 0.02);

  s.hangover_ms = 200;  // now the pause ends the first utterance
  u = Utterances(Detect(scene.Render(), s));
  EXPECT_EQ(u.size(), 2u);
}

TEST(TranscriptionVad, BurstsShorterThanMinimumSpeechAreIgnored) {
  Scene scene;
  scene.speech = {{1.0, 1.08}, {2.0, 2.1}, {3.5, 4.5}};  // two clicks, then speech
  VadSettings s;
  s.min_speech_ms = 200;
  s.hangover_ms = 300;
  const auto u = Utterances(Detect(scene.Render(), s));
  ASSERT_EQ(u.size(), 1u);
  EXPECT_NEAR(u[0].first, 3.5, 0.02);

  s.min_speech_ms = 50;
  EXPECT_EQ(Utterances(Detect(scene.Render(), s)).size(), 3u);
}

TEST(TranscriptionVad, SilenceAndSteadyNoiseAreNotSpeech) {
  Scene hiss;
  hiss.noise_db = -60;
  EXPECT_TRUE(Detect(hiss.Render()).events.empty());

  EXPECT_TRUE(Detect(std::vector<float>(kRate * 3, 0.0f)).events.empty());  // digital silence

  auto dc = hiss.Render();  // a DC offset is no sound
  for (float& x : dc) x += 0.3f;
  EXPECT_TRUE(Detect(dc).events.empty());
}

TEST(TranscriptionVad, TheNoiseFloorLearnsANewNoiseLevel) {
  // Quiet room, then a fan at -30 dBFS from 2 s on; speech over the fan at 9 s.
  Scene quiet;
  quiet.seconds = 12;
  quiet.noise_db = -60;
  Scene fan = quiet;
  fan.noise_db = -30;
  fan.speech_db = -10;
  fan.speech = {{9.0, 10.5}};
  auto audio = quiet.Render();
  const auto loud = fan.Render();
  std::copy(loud.begin() + 2 * kRate, loud.end(), audio.begin() + 2 * kRate);

  const Detection r = Detect(audio);
  const auto u = Utterances(r);
  ASSERT_FALSE(u.empty()) << r.Describe();
  // The step looks like speech until the 3-second floor window has
  // forgotten the quiet room, not for ever ...
  for (size_t i = 0; i + 1 < u.size(); ++i) EXPECT_LT(u[i].second, 5.5) << r.Describe();
  // ... and real speech above the new floor is still found.
  EXPECT_NEAR(u.back().first, 9.0, 0.05) << r.Describe();
  EXPECT_NEAR(u.back().second, 10.5, 0.05) << r.Describe();
}

TEST(TranscriptionVad, LongUtterancesAreCutAtTheQuietestPoint) {
  // 14 s of speech whose longest pause (200 ms, shorter than the hangover)
  // is at 8.4 s; at most 10 s per utterance.
  Scene scene;
  scene.seconds = 16;
  scene.speech = {{1.0, 8.4}, {8.6, 15.0}};
  VadSettings s;
  s.max_utterance_ms = 10000;
  const Detection r = Detect(scene.Render(), s);
  ASSERT_EQ(r.events.size(), 4u) << r.Describe();
  EXPECT_EQ(r.events[1].type, VadEvent::Type::kSpeechEnded);
  EXPECT_TRUE(r.events[1].cut);
  EXPECT_EQ(r.events[2].type, VadEvent::Type::kSpeechStarted);
  EXPECT_TRUE(r.events[2].cut);
  EXPECT_EQ(r.events[1].sample, r.events[2].sample);
  EXPECT_GE(r.events[1].sample, 8.4 * kRate) << r.Describe();
  EXPECT_LE(r.events[1].sample, 8.6 * kRate) << r.Describe();
  EXPECT_FALSE(r.events[3].cut);
  EXPECT_NEAR(static_cast<double>(r.events[3].sample) / kRate, 15.0, 0.02);
}

TEST(TranscriptionVad, FinishClosesAnOpenUtteranceAtItsLastSpeech) {
  Scene scene;
  scene.seconds = 3;
  scene.speech = {{1.0, 2.5}};
  VadSettings s;
  s.hangover_ms = 1000;  // the stream ends inside the hangover
  const auto u = Utterances(Detect(scene.Render(), s));
  ASSERT_EQ(u.size(), 1u);
  EXPECT_NEAR(u[0].second, 2.5, 0.02);
}

TEST(TranscriptionVad, EarliestPendingCoversACandidateOnset) {
  Scene scene;
  scene.seconds = 2;
  scene.speech = {{1.0, 2.0}};
  const auto audio = scene.Render();
  VadSettings s;
  s.min_speech_ms = 300;
  VoiceActivityDetector vad(s, std::make_unique<EnergyClassifier>(s.threshold_db));
  std::vector<VadEvent> events;
  vad.Push(audio.data(), static_cast<size_t>(1.15 * kRate), &events);  // onset seen, not yet confirmed
  EXPECT_TRUE(events.empty());
  EXPECT_NEAR(static_cast<double>(vad.earliest_pending()) / kRate, 1.0, 0.02);
  vad.Push(audio.data() + static_cast<size_t>(1.15 * kRate), static_cast<size_t>(0.3 * kRate), &events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_NEAR(static_cast<double>(events[0].sample) / kRate, 1.0, 0.02);
}

TEST(TranscriptionVad, TheMaximumReachedInsideAPauseEndsTheUtteranceAtItsLastSpeech) {
  // A hangover longer than half the maximum (settings refuse it; the
  // detector must still never produce an utterance that ends before it
  // starts): at 5 s the utterance is 4 s long, its speech stopped at 2.5 s
  // and the pause is still shorter than the hangover.
  Scene scene;
  scene.seconds = 8;
  scene.speech = {{1.0, 2.5}};
  VadSettings s;
  s.hangover_ms = 3000;
  s.max_utterance_ms = 4000;
  const Detection r = Detect(scene.Render(), s);
  const auto u = Utterances(r);
  ASSERT_EQ(u.size(), 1u) << r.Describe();
  EXPECT_NEAR(u[0].first, 1.0, 0.02) << r.Describe();
  EXPECT_NEAR(u[0].second, 2.5, 0.02) << r.Describe();
  for (const auto& e : r.events) EXPECT_FALSE(e.cut) << r.Describe();
}
