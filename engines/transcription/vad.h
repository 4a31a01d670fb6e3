// Voice activity detection on 16 kHz mono audio: cuts a stream into
// utterances. A classifier says frame by frame whether there is speech; the
// detector turns those decisions into utterance boundaries (onset after
// enough speech, end after enough silence, long utterances cut at their
// quietest point). Pure C++ (the Silero classifier lives in the model layer).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

namespace jota::transcription {

struct VadSettings {
  float threshold_db = 12.0f;      // energy classifier: speech when this far above the noise floor
  int hangover_ms = 500;           // silence that ends an utterance (shorter gaps are bridged)
  int min_speech_ms = 200;         // speech needed before an utterance starts (shorter bursts are ignored)
  int max_utterance_ms = 25000;    // longer utterances are cut at their quietest point
  int pre_roll_ms = 300;           // audio kept before the onset, for the decoder (not used here)
};

class SpeechClassifier {
 public:
  virtual ~SpeechClassifier() = default;
  virtual int frame_samples() const = 0;
  // One frame of frame_samples() samples; `level_db` is its energy (dBFS).
  virtual bool IsSpeech(const float* frame, float level_db) = 0;
};

// Energy against an adaptive noise floor: the lowest level of the last few
// seconds ("minimum statistics"). Speech always has short pauses that show
// the floor, so it stays put while someone talks; a noise that stays (a fan
// switched on) becomes the floor once the window has forgotten the quiet.
// The floor is taken from levels smoothed over 30 ms so that a lone dropout
// (digital zeros from a lost packet) does not make every hiss "speech".
class EnergyClassifier final : public SpeechClassifier {
 public:
  explicit EnergyClassifier(float threshold_db) : threshold_db_(threshold_db) {}
  int frame_samples() const override { return 160; }  // 10 ms
  bool IsSpeech(const float* frame, float level_db) override;
  float noise_floor_db() const;

 private:
  float threshold_db_;
  int64_t frame_ = 0;
  double recent_energy_[3] = {0, 0, 0};        // linear, the last frames
  std::deque<std::pair<int64_t, float>> min_;  // (frame, smoothed level), levels increasing: the window's minimum first
};

// Frame energy in dBFS (mean removed, so a DC offset is not taken for sound).
float FrameLevelDb(const float* frame, int n);

struct VadEvent {
  enum class Type { kSpeechStarted, kSpeechEnded };
  Type type;
  int64_t sample;     // position in the stream, in 16 kHz samples
  bool cut = false;   // a long utterance cut at max_utterance_ms (speech goes on)
};

class VoiceActivityDetector {
 public:
  VoiceActivityDetector(const VadSettings& settings, std::unique_ptr<SpeechClassifier> classifier);

  // Appends the events the new samples complete, in stream order. An
  // utterance cut at max_utterance_ms ends and the next starts at the cut.
  void Push(const float* samples, size_t n, std::vector<VadEvent>* events);
  // End of the stream: closes an open utterance at its last speech.
  void Finish(std::vector<VadEvent>* events);

  // Silence since the last speech frame (0 while speech goes on).
  int64_t samples_since_speech() const { return position_ - last_speech_end_; }
  // The earliest sample an upcoming kSpeechStarted can point at (callers may
  // drop audio before it, minus their pre-roll).
  int64_t earliest_pending() const;

 private:
  enum class State { kSilence, kCandidate, kSpeech };
  void Frame(const float* frame, std::vector<VadEvent>* events);
  int64_t QuietestPoint() const;

  std::unique_ptr<SpeechClassifier> classifier_;
  int frame_;
  int64_t hangover_, min_speech_, max_utterance_;  // in samples
  std::vector<float> pending_;                     // samples short of a whole frame
  int64_t position_ = 0;                           // samples classified so far
  State state_ = State::kSilence;
  int64_t start_ = 0;             // candidate or utterance onset
  int64_t last_speech_end_ = 0;   // end of the latest speech frame
  int64_t speech_samples_ = 0;    // speech seen in the candidate
  std::vector<float> levels_;     // per frame since start_, for the quietest-point cut
};

}  // namespace jota::transcription
