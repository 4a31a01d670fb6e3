// The stream session with a scripted decoder instead of whisper.cpp: the
// event sequence of a stream, what audio each decode gets, partial skipping,
// cancellation and the limits.
#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <random>
#include <sstream>

#include "session.h"

using namespace jota::transcription;

namespace {

constexpr int kRate = 16000;

// Records each decode; a gate holds decodes of its kind until it is opened
// or the session aborts them.
class FakeDecoder : public Decoder {
 public:
  struct Call {
    size_t samples;
    bool partial;
  };

  DecodeResult Decode(const std::vector<float>& pcm, const DecodeOptions& o, const std::function<bool()>& abort) override {
    std::unique_lock<std::mutex> lock(mu_);
    calls_.push_back({pcm.size(), o.partial});
    changed_.notify_all();
    while ((o.partial ? gate_partials_ : gate_finals_) && !abort()) changed_.wait_for(lock, std::chrono::milliseconds(5));
    DecodeResult r;
    if (abort()) {
      r.aborted = true;
      return r;
    }
    if (fail_next_) {
      fail_next_ = false;
      r.error = "whisper.cpp could not decode the audio (whisper_full error -7)";
      return r;
    }
    r.ok = true;
    r.text = (o.partial ? "partial of " : "heard ") + std::to_string(pcm.size());
    r.language = "en";
    jota::v1::Segment s;
    s.set_start_s(0.5);
    s.set_end_s(1.0);
    s.set_text(" " + r.text);
    r.segments.push_back(s);
    return r;
  }
  void Gate(bool partials, bool finals) {
    std::lock_guard<std::mutex> lock(mu_);
    gate_partials_ = partials;
    gate_finals_ = finals;
    changed_.notify_all();
  }
  void FailNext() {
    std::lock_guard<std::mutex> lock(mu_);
    fail_next_ = true;
  }
  void WaitForCalls(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return calls_.size() >= n; });
  }
  std::vector<Call> calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<Call> calls_;
  bool gate_partials_ = false;
  bool gate_finals_ = false;
  bool fail_next_ = false;
};

// Events as one line each, for whole-sequence comparisons.
class Recorder {
 public:
  EventSink Sink() {
    return [this](const jota::v1::TranscriptEvent& e) {
      std::lock_guard<std::mutex> lock(mu_);
      std::ostringstream line;
      line.precision(3);
      line << std::fixed;
      switch (e.event_case()) {
        case jota::v1::TranscriptEvent::kSpeechStarted:
          line << "speech_started u" << e.speech_started().utterance() << " @" << e.speech_started().at_s();
          break;
        case jota::v1::TranscriptEvent::kSpeechEnded:
          line << "speech_ended u" << e.speech_ended().utterance() << " @" << e.speech_ended().at_s();
          break;
        case jota::v1::TranscriptEvent::kPartial:
          line << "partial u" << e.partial().utterance() << " '" << e.partial().text() << "'";
          break;
        case jota::v1::TranscriptEvent::kFinal:
          line << "final u" << e.final().utterance() << " " << e.final().start_s() << "-" << e.final().end_s() << " '"
               << e.final().text() << "' seg " << e.final().segments(0).start_s() << "-" << e.final().segments(0).end_s();
          break;
        case jota::v1::TranscriptEvent::kError:
          line << "error " << e.error().code() << ": " << e.error().message();
          break;
        default: line << "unset";
      }
      lines_.push_back(line.str());
      changed_.notify_all();
      return true;
    };
  }
  void WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return lines_.size() >= n; });
  }
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::string> lines_;
};

// PCM16 bytes: quiet noise with loud tone bursts in the given spans (s).
std::string Audio(double seconds, std::vector<std::pair<double, double>> speech) {
  std::mt19937 rng(3);
  std::normal_distribution<float> noise(0.0f, 30.0f);
  std::string out;
  for (int i = 0; i < static_cast<int>(seconds * kRate); ++i) {
    const double t = static_cast<double>(i) / kRate;
    double v = noise(rng);
    for (const auto& [a, b] : speech)
      if (t >= a && t < b) v += 6000 * std::sin(2 * M_PI * 200 * t);
    const int16_t s = static_cast<int16_t>(std::lround(v));
    out.append(reinterpret_cast<const char*>(&s), 2);
  }
  return out;
}

StreamSettings Settings(bool vad, int partial_ms = 0) {
  StreamSettings s;
  s.vad = vad;
  s.partial_interval_ms = partial_ms;
  s.vad_settings.hangover_ms = 300;
  s.vad_settings.pre_roll_ms = 200;
  return s;
}

std::unique_ptr<SpeechClassifier> Energy() { return std::make_unique<EnergyClassifier>(12.0f); }

// The lines of one kind ("final", "speech_"): finals come from the decode
// thread, so their place among the VAD's events depends on timing.
std::vector<std::string> Only(const std::vector<std::string>& lines, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& l : lines)
    if (l.rfind(prefix, 0) == 0) out.push_back(l);
  return out;
}

void Push(StreamSession& s, const std::string& bytes, size_t chunk = 3200) {
  for (size_t pos = 0; pos < bytes.size(); pos += chunk) ASSERT_TRUE(s.PushAudio(bytes.substr(pos, chunk)).ok());
}

}  // namespace

TEST(TranscriptionSession, VadOffTheWholeStreamIsOneFinal) {
  FakeDecoder decoder;
  Recorder rec;
  Counters counters;
  StreamSession s(Settings(false), decoder, nullptr, 60 * kRate, counters, rec.Sink(), [] { return false; });
  Push(s, Audio(2.5, {}), 999 * 2);
  ASSERT_TRUE(s.Finish().ok());
  EXPECT_EQ(rec.lines(), std::vector<std::string>({"final u0 0.000-2.500 'heard 40000' seg 0.500-1.000"}));
  EXPECT_EQ(counters.utterances, 1u);
  EXPECT_EQ(counters.audio_samples, 40000u);
}

TEST(TranscriptionSession, VadEventSequenceWithPreRollAndPostRoll) {
  FakeDecoder decoder;
  Recorder rec;
  Counters counters;
  StreamSession s(Settings(true), decoder, Energy(), 60 * kRate, counters, rec.Sink(), [] { return false; });
  const std::string audio = Audio(6.0, {{1.0, 2.0}, {3.5, 4.5}});
  Push(s, audio.substr(0, 3 * kRate * 2));
  rec.WaitFor(3);  // the first final, before the second utterance starts
  Push(s, audio.substr(3 * kRate * 2));
  ASSERT_TRUE(s.Finish().ok());
  // Each final decodes 200 ms of pre-roll + the speech + 200 ms of post-roll
  // (1.4 s = 22400 samples); segment times are moved to stream time.
  EXPECT_EQ(rec.lines(), std::vector<std::string>({
                             "speech_started u0 @1.000",
                             "speech_ended u0 @2.000",
                             "final u0 1.000-2.000 'heard 22400' seg 1.300-1.800",
                             "speech_started u1 @3.500",
                             "speech_ended u1 @4.500",
                             "final u1 3.500-4.500 'heard 22400' seg 3.800-4.300",
                         }));
}

TEST(TranscriptionSession, AFailedDecodeIsAnErrorEventAndTheStreamGoesOn) {
  FakeDecoder decoder;
  decoder.FailNext();
  Recorder rec;
  Counters counters;
  StreamSession s(Settings(true), decoder, Energy(), 60 * kRate, counters, rec.Sink(), [] { return false; });
  const std::string audio = Audio(5.0, {{1.0, 2.0}, {3.5, 4.5}});
  Push(s, audio.substr(0, 3 * kRate * 2));
  rec.WaitFor(3);
  Push(s, audio.substr(3 * kRate * 2));
  ASSERT_TRUE(s.Finish().ok());
  const auto lines = rec.lines();
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[2], "error DECODE_FAILED: utterance 0: whisper.cpp could not decode the audio (whisper_full error -7)");
  EXPECT_EQ(lines[5], "final u1 3.500-4.500 'heard 22400' seg 3.800-4.300");
  EXPECT_EQ(counters.errors, 1u);
  EXPECT_EQ(counters.utterances, 1u);
}

TEST(TranscriptionSession, HalfCloseFlushesAnOpenUtterance) {
  FakeDecoder decoder;
  Recorder rec;
  Counters counters;
  StreamSession s(Settings(true), decoder, Energy(), 60 * kRate, counters, rec.Sink(), [] { return false; });
  Push(s, Audio(2.0, {{1.0, 2.0}}));
  ASSERT_TRUE(s.Finish().ok());
  EXPECT_EQ(rec.lines(), std::vector<std::string>({
                             "speech_started u0 @1.000",
                             "speech_ended u0 @2.000",
                             "final u0 1.000-2.000 'heard 19200' seg 1.300-1.800",
                         }));
}

TEST(TranscriptionSession, PartialsAreSkippedWhileTheDecoderIsBusyNeverQueued) {
  FakeDecoder decoder;
  decoder.Gate(true, false);  // the first partial's decode does not finish until we say so
  Recorder rec;
  Counters counters;
  StreamSession s(Settings(false, 200), decoder, nullptr, 60 * kRate, counters, rec.Sink(), [] { return false; });
  const std::string audio = Audio(3.0, {});
  Push(s, audio.substr(0, 6400));  // 200 ms: the first partial is due
  decoder.WaitForCalls(1);
  Push(s, audio.substr(6400));     // 2.8 s more: 14 more partials due, all while busy
  EXPECT_EQ(counters.partials_skipped, 14u);
  decoder.Gate(false, false);
  rec.WaitFor(1);
  ASSERT_TRUE(s.Finish().ok());
  const auto calls = decoder.calls();
  ASSERT_EQ(calls.size(), 2u);  // the one partial, then the final: nothing queued up
  EXPECT_TRUE(calls[0].partial);
  EXPECT_EQ(calls[0].samples, 3200u);
  EXPECT_FALSE(calls[1].partial);
  EXPECT_EQ(rec.lines(), std::vector<std::string>({"partial u0 'partial of 3200'",
                                                   "final u0 0.000-3.000 'heard 48000' seg 0.500-1.000"}));
}

TEST(TranscriptionSession, AFinalStopsTheStalePartialItOvertakes) {
  FakeDecoder decoder;
  decoder.Gate(true, false);  // partials run until aborted
  Recorder rec;
  Counters counters;
  StreamSession s(Settings(false, 200), decoder, nullptr, 60 * kRate, counters, rec.Sink(), [] { return false; });
  Push(s, Audio(0.2, {}));  // one partial due
  decoder.WaitForCalls(1);
  ASSERT_TRUE(s.Finish().ok());  // the final does not wait for the partial
  EXPECT_EQ(rec.lines(), std::vector<std::string>({"final u0 0.000-0.200 'heard 3200' seg 0.500-1.000"}));
  EXPECT_EQ(counters.partials, 0u);
  EXPECT_EQ(counters.partials_skipped, 1u);
}

TEST(TranscriptionSession, CancelStopsADecodeInProgress) {
  FakeDecoder decoder;
  decoder.Gate(true, true);  // decodes until aborted
  Recorder rec;
  Counters counters;
  StreamSession s(Settings(true), decoder, Energy(), 60 * kRate, counters, rec.Sink(), [] { return false; });
  Push(s, Audio(3.0, {{1.0, 2.0}}));
  decoder.WaitForCalls(1);
  s.Cancel();  // returns only once the decode thread has stopped
  EXPECT_EQ(rec.lines(), std::vector<std::string>({"speech_started u0 @1.000", "speech_ended u0 @2.000"}));
  EXPECT_EQ(counters.utterances, 0u);
}

TEST(TranscriptionSession, RefusesBadChunksAndOverlongStreams) {
  FakeDecoder decoder;
  Recorder rec;
  Counters counters;
  StreamSession s(Settings(false), decoder, nullptr, kRate, counters, rec.Sink(), [] { return false; });
  grpc::Status st = s.PushAudio("abc");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "audio chunk of 3 bytes is not a whole number of 2-byte frames (16-bit PCM, 1 channel(s))");
  ASSERT_TRUE(s.PushAudio(std::string(kRate * 2, '\0')).ok());  // exactly the maximum
  st = s.PushAudio(std::string(2, '\0'));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(st.error_message(), "the stream is longer than this engine's maximum of 1 s of audio (--max-audio-s)");
}

TEST(TranscriptionSession, OtherRatesAreResampledBeforeTheVad) {
  FakeDecoder decoder;
  Recorder rec;
  Counters counters;
  StreamSettings settings = Settings(true);
  settings.format.sample_rate = 8000;
  StreamSession s(settings, decoder, Energy(), 60 * kRate, counters, rec.Sink(), [] { return false; });
  // 8 kHz audio: 2 bytes per sample, 8000 samples per second.
  std::string audio;
  for (int i = 0; i < 3 * 8000; ++i) {
    const double t = i / 8000.0;
    const int16_t v = static_cast<int16_t>(t >= 1.0 && t < 2.0 ? 6000 * std::sin(2 * M_PI * 200 * t) : (i % 7) - 3);
    audio.append(reinterpret_cast<const char*>(&v), 2);
  }
  Push(s, audio, 1000);
  ASSERT_TRUE(s.Finish().ok());
  const auto lines = rec.lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "speech_started u0 @1.000");
  EXPECT_EQ(lines[1], "speech_ended u0 @2.000");
  EXPECT_EQ(counters.audio_samples, 48000u);
}

TEST(TranscriptionSession, APreRollLongerThanTheGapStaysOutOfThePreviousUtterance) {
  // 300 ms between the bursts, a 100 ms hangover (two utterances) and a
  // 500 ms pre-roll: the second final's audio starts where the first one's
  // ended (2.1 s: its speech, then a post-roll as long as the hangover),
  // not 500 ms before its onset, inside the first utterance's words.
  FakeDecoder decoder;
  Recorder rec;
  Counters counters;
  StreamSettings settings = Settings(true);
  settings.vad_settings.hangover_ms = 100;
  settings.vad_settings.pre_roll_ms = 500;
  StreamSession s(settings, decoder, Energy(), 60 * kRate, counters, rec.Sink(), [] { return false; });
  Push(s, Audio(4.0, {{1.0, 2.0}, {2.3, 3.0}}));
  ASSERT_TRUE(s.Finish().ok());
  EXPECT_EQ(Only(rec.lines(), "speech_"), std::vector<std::string>({"speech_started u0 @1.000", "speech_ended u0 @2.000",
                                                                    "speech_started u1 @2.300", "speech_ended u1 @3.000"}));
  // Segment times are 0.5-1.0 s into the decoded audio: they show where it starts.
  EXPECT_EQ(Only(rec.lines(), "final"), std::vector<std::string>({
                                            "final u0 1.000-2.000 'heard 25600' seg 1.000-1.500",
                                            "final u1 2.300-3.000 'heard 16000' seg 2.600-3.100",
                                        }));
}

TEST(TranscriptionSession, APostRollNeverReachesIntoTheNextUtterance) {
  // A 50 ms hangover and 100 ms between the bursts, in 400 ms chunks: when
  // the first utterance ends, the audio after it is already there, and its
  // usual 200 ms post-roll would take in the first words of the next one.
  // It gets as much as the hangover (which the next onset is always beyond).
  FakeDecoder decoder;
  Recorder rec;
  Counters counters;
  StreamSettings settings = Settings(true);
  settings.vad_settings.hangover_ms = 50;
  StreamSession s(settings, decoder, Energy(), 60 * kRate, counters, rec.Sink(), [] { return false; });
  Push(s, Audio(4.0, {{1.0, 2.0}, {2.1, 3.0}}), 12800);
  ASSERT_TRUE(s.Finish().ok());
  EXPECT_EQ(Only(rec.lines(), "speech_"), std::vector<std::string>({"speech_started u0 @1.000", "speech_ended u0 @2.000",
                                                                    "speech_started u1 @2.100", "speech_ended u1 @3.000"}));
  // 0.8-2.05 s (pre-roll, speech, post-roll), then 2.05-3.05 s.
  EXPECT_EQ(Only(rec.lines(), "final"), std::vector<std::string>({
                                            "final u0 1.000-2.000 'heard 20000' seg 1.300-1.800",
                                            "final u1 2.100-3.000 'heard 16000' seg 2.550-3.050",
                                        }));
}
