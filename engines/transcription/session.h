// One Stream call's state: audio conversion, the utterance buffer, VAD and
// the scheduling of partial and final decodes. Knows nothing of gRPC streams:
// audio comes in through PushAudio on the caller's thread, events go out
// through the sink (from that thread and from the session's decode thread).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "audio.h"
#include "counters.h"
#include "jota/v1/transcription.pb.h"
#include "model.h"
#include "settings.h"
#include "vad.h"

namespace jota::transcription {

// Returns false when the event could not be delivered (the client is gone).
// Called from two threads; the sink serialises its writes.
using EventSink = std::function<bool(const jota::v1::TranscriptEvent&)>;

class StreamSession {
 public:
  // `classifier`: the VAD's frame classifier, null when settings.vad is off.
  // `max_samples`: the longest stream accepted, in 16 kHz samples.
  // `gone`: polled while decoding; true stops the work (client or engine gone).
  StreamSession(StreamSettings settings, Decoder& decoder, std::unique_ptr<SpeechClassifier> classifier,
                int64_t max_samples, Counters& counters, EventSink sink, std::function<bool()> gone);
  ~StreamSession();  // cancels unless Finish() ran
  StreamSession(const StreamSession&) = delete;
  StreamSession& operator=(const StreamSession&) = delete;

  // INVALID_ARGUMENT (not whole frames) or OUT_OF_RANGE (too long).
  grpc::Status PushAudio(std::string_view bytes);
  // The client half-closed: the last utterance becomes a final, and this
  // returns once every final has been sent.
  grpc::Status Finish();
  // The client went away: stops decoding at once (whisper.cpp's abort callback).
  void Cancel();

  // After Finish(): whether every final went to the sink; false when `gone`
  // or a failed write cut the flush short.
  bool flushed() const { return flushed_; }
  int64_t samples_received() const { return total_; }  // 16 kHz samples

 private:
  struct Job {
    bool partial = false;
    int utterance = 0;
    int64_t audio_start = 0;   // first sample of `audio` in the stream
    int64_t speech_start = 0;  // what the VAD said (no pre-roll)
    int64_t speech_end = 0;
    std::vector<float> audio;
  };

  grpc::Status Ingest(const std::vector<float>& samples);
  void OnVadEvent(const VadEvent& e);
  void PostFinal(int64_t speech_end, int64_t audio_end);
  void MaybePostPartial();
  void TrimBuffer();
  std::vector<float> Slice(int64_t from, int64_t to) const;
  void Send(const jota::v1::TranscriptEvent& e);
  void Run();  // the decode thread
  void Deliver(const Job& job, const DecodeResult& r);
  void StopWorker(bool drain);

  const StreamSettings settings_;
  Decoder& decoder_;
  Counters& counters_;
  EventSink sink_;
  std::function<bool()> gone_;
  const int64_t max_samples_;
  const int64_t pre_roll_, post_roll_, partial_interval_;  // in samples
  DecodeOptions partial_options_;
  AudioConverter converter_;
  std::optional<VoiceActivityDetector> vad_;

  // Reader side (the caller's thread).
  std::vector<float> buffer_;   // audio from buffer_start_ on
  int64_t buffer_start_ = 0;
  int64_t total_ = 0;           // samples received
  bool utterance_open_ = false;
  int utterance_ = 0;
  int64_t audio_start_ = 0;     // of the open utterance, pre-roll included
  int64_t speech_start_ = 0;
  int64_t last_audio_end_ = 0;  // of the latest final
  int64_t next_partial_at_ = 0;
  std::chrono::steady_clock::time_point next_partial_wall_{};
  std::vector<VadEvent> events_;

  // Shared with the decode thread.
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job> finals_;
  std::optional<Job> partial_;  // at most one, and only while the decoder is idle
  bool busy_ = false;
  bool closing_ = false;
  bool flushed_ = false;  // written by the decode thread, read after joining it
  std::atomic<bool> aborted_{false};
  // A final is waiting: a partial being decoded is stale, stop it.
  std::atomic<bool> final_waiting_{false};
  std::thread worker_;
};

}  // namespace jota::transcription
