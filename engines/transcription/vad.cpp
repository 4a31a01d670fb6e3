#include "vad.h"

#include <algorithm>
#include <cmath>

namespace jota::transcription {

namespace {
constexpr int64_t kRate = 16000;
// Digital silence would put the floor at -100 dB and make any hiss
// "speech"; no real microphone is that quiet.
constexpr float kMinFloorDb = -70.0f;
constexpr int64_t kFloorWindowFrames = 300;  // 3 s
constexpr int kQuietSmoothFrames = 5;        // 50 ms: a pause, not a gap between phonemes

int64_t MsToSamples(int ms) { return static_cast<int64_t>(ms) * kRate / 1000; }
}  // namespace

float FrameLevelDb(const float* frame, int n) {
  double mean = 0.0;
  for (int i = 0; i < n; ++i) mean += frame[i];
  mean /= n;
  double energy = 0.0;
  for (int i = 0; i < n; ++i) energy += (frame[i] - mean) * (frame[i] - mean);
  return static_cast<float>(10.0 * std::log10(energy / n + 1e-10));
}

bool EnergyClassifier::IsSpeech(const float*, float level_db) {
  constexpr int kSmooth = sizeof(recent_energy_) / sizeof(recent_energy_[0]);
  recent_energy_[frame_ % kSmooth] = std::pow(10.0, level_db / 10.0);
  const int have = static_cast<int>(std::min<int64_t>(frame_ + 1, kSmooth));
  double sum = 0.0;
  for (int i = 0; i < have; ++i) sum += recent_energy_[i];
  const float smoothed = static_cast<float>(10.0 * std::log10(sum / have));
  while (!min_.empty() && min_.back().second >= smoothed) min_.pop_back();
  min_.emplace_back(frame_, smoothed);
  while (min_.front().first <= frame_ - kFloorWindowFrames) min_.pop_front();
  ++frame_;
  return level_db > noise_floor_db() + threshold_db_;
}

float EnergyClassifier::noise_floor_db() const {
  return min_.empty() ? kMinFloorDb : std::max(min_.front().second, kMinFloorDb);
}

VoiceActivityDetector::VoiceActivityDetector(const VadSettings& settings, std::unique_ptr<SpeechClassifier> classifier)
    : classifier_(std::move(classifier)),
      frame_(classifier_->frame_samples()),
      hangover_(MsToSamples(settings.hangover_ms)),
      min_speech_(MsToSamples(settings.min_speech_ms)),
      max_utterance_(MsToSamples(settings.max_utterance_ms)) {}

int64_t VoiceActivityDetector::earliest_pending() const {
  return state_ == State::kSilence ? position_ : start_;
}

void VoiceActivityDetector::Push(const float* samples, size_t n, std::vector<VadEvent>* events) {
  size_t i = 0;
  if (!pending_.empty()) {
    const size_t take = std::min(n, static_cast<size_t>(frame_) - pending_.size());
    pending_.insert(pending_.end(), samples, samples + take);
    i = take;
    if (pending_.size() < static_cast<size_t>(frame_)) return;
    Frame(pending_.data(), events);
    pending_.clear();
  }
  for (; i + frame_ <= n; i += frame_) Frame(samples + i, events);
  pending_.assign(samples + i, samples + n);
}

void VoiceActivityDetector::Frame(const float* frame, std::vector<VadEvent>* events) {
  const float level = FrameLevelDb(frame, frame_);
  const bool speech = classifier_->IsSpeech(frame, level);
  const int64_t begin = position_;
  position_ += frame_;

  switch (state_) {
    case State::kSilence:
      if (!speech) return;
      state_ = State::kCandidate;
      start_ = begin;
      speech_samples_ = 0;
      levels_.clear();
      [[fallthrough]];
    case State::kCandidate:
      levels_.push_back(level);
      if (!speech) {
        if (position_ - last_speech_end_ >= hangover_) state_ = State::kSilence;  // a burst too short to be speech
        return;
      }
      speech_samples_ += frame_;
      last_speech_end_ = position_;
      if (speech_samples_ >= min_speech_) {
        state_ = State::kSpeech;
        events->push_back({VadEvent::Type::kSpeechStarted, start_});
      }
      return;
    case State::kSpeech:
      levels_.push_back(level);
      if (speech) last_speech_end_ = position_;
      if (position_ - last_speech_end_ >= hangover_) {
        state_ = State::kSilence;
        events->push_back({VadEvent::Type::kSpeechEnded, last_speech_end_});
        return;
      }
      if (position_ - start_ >= max_utterance_) {
        // The speech stopped before the middle and the pause has not reached
        // the hangover yet (only when hangover > max_utterance / 2, which
        // settings refuse): a cut in that pause would leave an utterance that
        // starts after its last speech and ends before it begins. The pause
        // ends the utterance instead.
        if ((last_speech_end_ - start_) / frame_ <= static_cast<int64_t>(levels_.size()) / 2) {
          state_ = State::kSilence;
          events->push_back({VadEvent::Type::kSpeechEnded, last_speech_end_});
          return;
        }
        const int64_t cut = QuietestPoint();
        events->push_back({VadEvent::Type::kSpeechEnded, cut, true});
        events->push_back({VadEvent::Type::kSpeechStarted, cut, true});
        levels_.erase(levels_.begin(), levels_.begin() + (cut - start_) / frame_);
        start_ = cut;
      }
      return;
  }
}

// The quietest 50 ms in the second half of the utterance, up to its last
// speech (cutting in the silence after it would leave an empty utterance).
int64_t VoiceActivityDetector::QuietestPoint() const {
  const int64_t frames_to_speech_end = (last_speech_end_ - start_) / frame_;
  const int64_t first = static_cast<int64_t>(levels_.size()) / 2;
  const int64_t last = std::max(first + 1, frames_to_speech_end);
  int64_t best = first;
  float best_level = INFINITY;
  for (int64_t f = first; f < last; ++f) {
    const int64_t lo = std::max<int64_t>(0, f - kQuietSmoothFrames / 2);
    const int64_t hi = std::min<int64_t>(static_cast<int64_t>(levels_.size()), f + kQuietSmoothFrames / 2 + 1);
    float sum = 0.0f;
    for (int64_t k = lo; k < hi; ++k) sum += levels_[k];
    const float mean = sum / static_cast<float>(hi - lo);
    if (mean < best_level) {
      best_level = mean;
      best = f;
    }
  }
  return start_ + best * frame_;
}

void VoiceActivityDetector::Finish(std::vector<VadEvent>* events) {
  if (state_ == State::kSpeech) events->push_back({VadEvent::Type::kSpeechEnded, last_speech_end_});
  state_ = State::kSilence;
}

}  // namespace jota::transcription
