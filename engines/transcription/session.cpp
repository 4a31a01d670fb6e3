#include "session.h"

#include <algorithm>

#include "log.h"

namespace jota::transcription {

namespace {
constexpr int64_t kRate = kWhisperRate;
// Audio kept after the end of speech for the decoder: the VAD calls the end
// at the last loud frame, and whisper does better with a trailing breath.
constexpr int64_t kPostRoll = kRate / 5;
// Whisper sees 30 s at a time: a partial of a longer utterance (VAD off)
// decodes its latest 30 s.
constexpr int64_t kWindow = 30 * kRate;
// Audio before the pre-roll is dropped in steps this big (not every chunk).
constexpr int64_t kTrimStep = kRate;
// No partial while the speaker pauses: it would say what the last one said,
// and the pause may be the end, when the decoder must be free for the final.
constexpr int64_t kPauseNoPartial = kRate / 5;

double Seconds(int64_t samples) { return static_cast<double>(samples) / kRate; }
int64_t MsToSamples(int ms) { return static_cast<int64_t>(ms) * kRate / 1000; }
}  // namespace

StreamSession::StreamSession(StreamSettings settings, Decoder& decoder, std::unique_ptr<SpeechClassifier> classifier,
                             int64_t max_samples, Counters& counters, EventSink sink, std::function<bool()> gone)
    : settings_(std::move(settings)),
      decoder_(decoder),
      counters_(counters),
      sink_(std::move(sink)),
      gone_(std::move(gone)),
      max_samples_(max_samples),
      pre_roll_(settings_.vad ? MsToSamples(settings_.vad_settings.pre_roll_ms) : 0),
      // The next onset comes a hangover after the end at the earliest: a
      // post-roll no longer than that never reaches into the next utterance.
      post_roll_(settings_.vad ? std::min(kPostRoll, MsToSamples(settings_.vad_settings.hangover_ms)) : 0),
      partial_interval_(MsToSamples(settings_.partial_interval_ms)),
      converter_(settings_.format) {
  partial_options_ = settings_.decode;
  partial_options_.partial = true;
  if (settings_.vad) vad_.emplace(settings_.vad_settings, std::move(classifier));
  next_partial_at_ = partial_interval_;
  worker_ = std::thread([this] { Run(); });
}

StreamSession::~StreamSession() {
  if (worker_.joinable()) Cancel();
}

grpc::Status StreamSession::PushAudio(std::string_view bytes) {
  std::vector<float> samples;
  std::string error;
  if (!converter_.Push(bytes, &samples, &error)) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, error);
  return Ingest(samples);
}

grpc::Status StreamSession::Ingest(const std::vector<float>& samples) {
  if (total_ + static_cast<int64_t>(samples.size()) > max_samples_)
    return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                        "the stream is longer than this engine's maximum of " + std::to_string(max_samples_ / kRate) +
                            " s of audio (--max-audio-s)");
  counters_.audio_samples += samples.size();
  buffer_.insert(buffer_.end(), samples.begin(), samples.end());
  total_ += static_cast<int64_t>(samples.size());
  if (vad_) {
    events_.clear();
    vad_->Push(samples.data(), samples.size(), &events_);
    for (const VadEvent& e : events_) OnVadEvent(e);
  }
  MaybePostPartial();
  TrimBuffer();
  return grpc::Status::OK;
}

void StreamSession::OnVadEvent(const VadEvent& e) {
  jota::v1::TranscriptEvent out;
  if (e.type == VadEvent::Type::kSpeechStarted) {
    utterance_open_ = true;
    speech_start_ = e.sample;
    // A cut goes on from where the previous utterance stopped: no pre-roll,
    // or both finals would hold the words around the cut.
    // Nor may the pre-roll reach back into the previous final's audio (a
    // pre-roll longer than the gap): those words would be decoded twice.
    audio_start_ = e.cut ? e.sample : std::max({buffer_start_, e.sample - pre_roll_, std::min(last_audio_end_, e.sample)});
    next_partial_at_ = e.sample + partial_interval_;
    out.mutable_speech_started()->set_at_s(Seconds(e.sample));
    out.mutable_speech_started()->set_utterance(utterance_);
    Send(out);
    return;
  }
  out.mutable_speech_ended()->set_at_s(Seconds(e.sample));
  out.mutable_speech_ended()->set_utterance(utterance_);
  Send(out);
  PostFinal(e.sample, e.cut ? e.sample : std::min(total_, e.sample + post_roll_));
}

void StreamSession::PostFinal(int64_t speech_end, int64_t audio_end) {
  Job job;
  job.utterance = utterance_++;
  job.audio_start = audio_start_;
  job.speech_start = speech_start_;
  job.speech_end = speech_end;
  job.audio = Slice(audio_start_, audio_end);
  last_audio_end_ = audio_end;
  utterance_open_ = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    finals_.push_back(std::move(job));
    final_waiting_ = true;
  }
  wake_.notify_one();
}

// Partials are due every partial interval of audio, and at most once per
// interval of wall time. One is only started when the decoder is idle: when
// decoding falls behind, partials are skipped instead of queued, so the
// latency of finals never grows behind a backlog of stale hypotheses.
void StreamSession::MaybePostPartial() {
  if (partial_interval_ == 0 || total_ < next_partial_at_) return;
  if (vad_ ? !utterance_open_ || vad_->samples_since_speech() > kPauseNoPartial : total_ == 0) return;
  next_partial_at_ = total_ + partial_interval_;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (busy_ || !finals_.empty() || partial_ || now < next_partial_wall_) {
      ++counters_.partials_skipped;
      return;
    }
    Job job;
    job.partial = true;
    job.utterance = utterance_;
    job.speech_start = vad_ ? speech_start_ : 0;
    job.audio_start = std::max(vad_ ? audio_start_ : 0, total_ - kWindow);
    job.speech_end = total_;
    job.audio = Slice(job.audio_start, total_);
    partial_ = std::move(job);
    next_partial_wall_ = now + std::chrono::milliseconds(settings_.partial_interval_ms);
  }
  wake_.notify_one();
}

void StreamSession::TrimBuffer() {
  int64_t keep_from = 0;  // VAD off: the whole stream is the utterance
  if (vad_) keep_from = utterance_open_ ? audio_start_ : std::max<int64_t>(0, vad_->earliest_pending() - pre_roll_);
  if (keep_from - buffer_start_ < kTrimStep) return;
  buffer_.erase(buffer_.begin(), buffer_.begin() + (keep_from - buffer_start_));
  buffer_start_ = keep_from;
}

std::vector<float> StreamSession::Slice(int64_t from, int64_t to) const {
  from = std::max(from, buffer_start_);
  to = std::min(to, total_);
  if (to <= from) return {};
  return std::vector<float>(buffer_.begin() + (from - buffer_start_), buffer_.begin() + (to - buffer_start_));
}

void StreamSession::Send(const jota::v1::TranscriptEvent& e) {
  if (!sink_(e)) aborted_ = true;  // nobody is listening: stop decoding
}

grpc::Status StreamSession::Finish() {
  std::vector<float> tail;
  converter_.Flush(&tail);
  if (grpc::Status st = Ingest(tail); !st.ok()) {
    StopWorker(false);
    return st;
  }
  if (vad_) {
    events_.clear();
    vad_->Finish(&events_);
    for (const VadEvent& e : events_) OnVadEvent(e);
  } else if (total_ > 0) {
    audio_start_ = speech_start_ = 0;
    PostFinal(total_, total_);
  }
  StopWorker(true);
  return grpc::Status::OK;
}

void StreamSession::Cancel() {
  aborted_ = true;
  StopWorker(false);
}

void StreamSession::StopWorker(bool drain) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
    if (!drain) aborted_ = true;
  }
  wake_.notify_one();
  if (worker_.joinable()) worker_.join();
}

void StreamSession::Run() {
  const std::function<bool()> abort_final = [this] { return aborted_.load() || gone_(); };
  const std::function<bool()> abort_partial = [this] { return aborted_.load() || gone_() || final_waiting_.load(); };
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return aborted_ || closing_ || !finals_.empty() || partial_; });
      if (aborted_) return;
      if (!finals_.empty()) {
        job = std::move(finals_.front());
        finals_.pop_front();
        final_waiting_ = !finals_.empty();
      } else if (partial_ && !closing_) {
        job = std::move(*partial_);
      } else {
        flushed_ = true;
        return;  // closing, every final sent; a pending partial is moot
      }
      partial_.reset();  // a final supersedes the partial of its utterance
      busy_ = true;
    }
    const DecodeResult r = job.partial ? decoder_.Decode(job.audio, partial_options_, abort_partial)
                                       : decoder_.Decode(job.audio, settings_.decode, abort_final);
    {
      std::lock_guard<std::mutex> lock(mu_);
      busy_ = false;
    }
    if (aborted_ || (r.aborted && !job.partial)) return;
    if (r.aborted) {
      ++counters_.partials_skipped;  // overtaken by its final
      continue;
    }
    Deliver(job, r);
  }
}

void StreamSession::Deliver(const Job& job, const DecodeResult& r) {
  jota::v1::TranscriptEvent out;
  if (!r.ok) {
    LogWarn("decode failed", {{"request_id", settings_.request_id}, {"error", r.error},
                              {"utterance", std::to_string(job.utterance)}, {"partial", job.partial ? "true" : "false"}});
    if (job.partial) return;  // the final will tell
    ++counters_.errors;
    out.mutable_error()->set_code("DECODE_FAILED");
    out.mutable_error()->set_message("utterance " + std::to_string(job.utterance) + ": " + r.error);
    Send(out);
    return;
  }
  if (job.partial) {
    jota::v1::PartialTranscript* p = out.mutable_partial();
    p->set_utterance(job.utterance);
    p->set_text(r.text);
    p->set_start_s(Seconds(job.speech_start));
    p->set_end_s(Seconds(job.speech_end));
    ++counters_.partials;
    Send(out);
    return;
  }
  jota::v1::FinalTranscript* f = out.mutable_final();
  f->set_utterance(job.utterance);
  f->set_text(r.text);
  f->set_start_s(Seconds(job.speech_start));
  f->set_end_s(Seconds(job.speech_end));
  f->set_language(r.language);
  f->set_decode_ms(r.decode_ms);
  const double offset = Seconds(job.audio_start);
  for (const jota::v1::Segment& s : r.segments) {
    jota::v1::Segment* out_seg = f->add_segments();
    *out_seg = s;
    out_seg->set_start_s(s.start_s() + offset);
    out_seg->set_end_s(s.end_s() + offset);
  }
  ++counters_.utterances;
  Send(out);
}

}  // namespace jota::transcription
