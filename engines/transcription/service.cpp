#include "service.h"

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>

#include <grpc/grpc.h>

#include "build_info.h"
#include "log.h"
#include "runtime.h"
#include "session.h"
#include "settings.h"

namespace jota::transcription {

namespace {
constexpr int64_t kRate = kWhisperRate;
// How long work in progress may go on after SIGTERM. EngineServer
// (common/runtime.cpp) then gives calls kShutdownGrace before it cancels
// them; unary calls finish inside that, streams before it starts (see Stop()).
constexpr auto kShutdownFlush = std::chrono::seconds(3);
static_assert(kShutdownFlush < EngineServer::kShutdownGrace, "a Transcribe cut off at shutdown must end before the server cancels it");
// Stop() waits this much longer for streams to end: whisper.cpp notices an
// abort between graph nodes, which can take a while on a loaded machine.
constexpr auto kShutdownStreamsMargin = std::chrono::seconds(1);
// Messages read ahead of the session: the socket stays busy while it works,
// and a client that sends faster than that soon meets flow control.
constexpr size_t kReadAhead = 4;

using ServerStream = grpc::ServerReaderWriter<jota::v1::TranscriptEvent, jota::v1::AudioIn>;

grpc::Status Unavailable(const std::string& what) {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the engine is shutting down: " + what);
}

std::string SecondsText(int64_t samples) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(samples) / kRate);
  return buf;
}
}  // namespace

// The sync API's Read() blocks with no timeout and nothing can wake it but a
// cancel. So a thread of its own reads the client's messages, and the
// handler waits on them with the idle limit and shutdown in view. A handler
// may not return while another thread is inside Read() on its stream: End()
// ends such a read with a cancel that carries the call's status, which the
// client receives as that status.
class StreamInbox {
 public:
  enum class Next { kMessage, kEnd, kIdle, kStopping };

  StreamInbox(grpc::ServerContext* ctx, ServerStream* stream, int idle_s)
      : ctx_(ctx), stream_(stream), idle_(idle_s), idle_from_(std::chrono::steady_clock::now()) {
    reader_ = std::thread([this] { ReadLoop(); });
  }
  ~StreamInbox() {
    if (reader_.joinable()) End(grpc::Status(grpc::StatusCode::CANCELLED, "the stream ended"));
  }

  // kEnd: the client half-closed or the call is cancelled (ctx->IsCancelled()
  // tells). kIdle: the client sent nothing for the idle limit while the
  // engine was ready to read. kStopping: Wake() (the engine shuts down).
  Next Wait(jota::v1::AudioIn* out) {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      // Before the queue: a client that sends faster than real time always
      // has a message waiting, and must still learn of a shutdown. One that
      // has half-closed sent all it will: what is queued is drained and
      // flushed into finals like any end.
      if (stopping_ && !ended_) return Next::kStopping;
      if (!queue_.empty()) {
        *out = std::move(queue_.front());
        queue_.pop_front();
        room_.notify_one();
        return Next::kMessage;
      }
      if (ended_) return Next::kEnd;
      // Only time spent waiting in Read() counts: while the reader waits for
      // room, the engine is behind, not the client.
      if (idle_.count() > 0 && reading_) {
        const auto due = std::max(read_since_, idle_from_) + idle_;
        if (std::chrono::steady_clock::now() >= due) return Next::kIdle;
        arrived_.wait_until(lock, due);
      } else {
        arrived_.wait(lock);
      }
    }
  }

  // Time spent waiting for a decoder is not the client's idleness.
  void RestartIdleClock() {
    std::lock_guard<std::mutex> lock(mu_);
    idle_from_ = std::chrono::steady_clock::now();
  }

  void Wake() {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    arrived_.notify_all();
  }

  // Stops the reader; `st` is what the client gets should a read still be
  // pending (the handler's own return value is moot once the call is cancelled).
  void End(const grpc::Status& st) {
    bool in_read;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      in_read = reading_;
    }
    room_.notify_all();
    if (in_read && !st.ok())
      grpc_call_cancel_with_status(ctx_->c_call(), static_cast<grpc_status_code>(st.error_code()),
                                   st.error_message().c_str(), nullptr);
    else if (in_read)
      ctx_->TryCancel();
    reader_.join();
  }

 private:
  void ReadLoop() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        room_.wait(lock, [&] { return stop_ || queue_.size() < kReadAhead; });
        if (stop_) return;
        reading_ = true;  // from here on End() must cancel to wake us
        read_since_ = std::chrono::steady_clock::now();
      }
      arrived_.notify_all();  // the idle clock runs from now
      jota::v1::AudioIn msg;
      const bool ok = stream_->Read(&msg);
      {
        std::lock_guard<std::mutex> lock(mu_);
        reading_ = false;
        if (ok) queue_.push_back(std::move(msg));
        else ended_ = true;
      }
      arrived_.notify_all();
      if (!ok) return;
    }
  }

  grpc::ServerContext* const ctx_;
  ServerStream* const stream_;
  const std::chrono::seconds idle_;
  std::mutex mu_;
  std::condition_variable arrived_, room_;
  std::deque<jota::v1::AudioIn> queue_;
  bool reading_ = false, ended_ = false, stop_ = false, stopping_ = false;
  std::chrono::steady_clock::time_point read_since_{}, idle_from_;
  std::thread reader_;
};

TranscriptionService::TranscriptionService(BearerAuth auth, EngineConfig config)
    : auth_(std::move(auth)), config_(std::move(config)) {}

void TranscriptionService::SetModel(std::unique_ptr<LoadedModel> model) {
  model_ = std::move(model);
  const DecoderConfig decoder{config_.threads, config_.temperature_fallback};
  const LoadedModel* m = model_.get();
  pool_ = std::make_unique<DecoderPool>(config_.streams_max, config_.queue_max,
                                        [m, decoder](std::string* error) { return MakeWhisperDecoder(*m, decoder, error); });
  ready_.store(true);
}

void TranscriptionService::Stop() {
  flush_deadline_.store((std::chrono::steady_clock::now() + kShutdownFlush).time_since_epoch().count());
  stopping_.store(true);
  if (ready_.load()) pool_->Shutdown();
  // Waits for the open streams to end before EngineServer's Shutdown() starts:
  // a stream still reading ends with a cancel that carries its status, and
  // once a shutting-down server has no call left it drops the connections,
  // status and all, before that status is written (the client would see
  // "Connection dropped" instead of UNAVAILABLE and its reason).
  std::unique_lock<std::mutex> lock(streams_mu_);
  for (StreamInbox* s : streams_) s->Wake();
  streams_done_.wait_until(lock, std::chrono::steady_clock::now() + kShutdownFlush + kShutdownStreamsMargin,
                           [&] { return streams_.empty(); });
}

bool TranscriptionService::FlushOver() const {
  return stopping_.load() && std::chrono::steady_clock::now().time_since_epoch().count() >= flush_deadline_.load();
}

grpc::Status TranscriptionService::Admit(const grpc::ServerContext& ctx) const {
  grpc::Status st = auth_.Check(ctx);
  if (!st.ok()) return st;
  if (!ready_.load()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "model is still loading");
  return grpc::Status::OK;
}

grpc::Status TranscriptionService::Count(grpc::Status st) {
  if (st.error_code() == grpc::StatusCode::CANCELLED)
    ++counters_.cancellations;
  else if (!st.ok())
    ++counters_.errors;
  return st;
}

grpc::Status TranscriptionService::Info(grpc::ServerContext* ctx, const jota::v1::TranscriptionInfoRequest*,
                                        jota::v1::TranscriptionInfo* res) {
  if (grpc::Status st = auth_.Check(*ctx); !st.ok()) return st;
  res->set_ready(ready_.load());
  if (ready_.load()) {
    res->set_model_path(model_->path);
    res->set_model_name(std::filesystem::path(model_->path).stem().string());
    res->set_model_type(model_->type);
    res->set_multilingual(model_->multilingual);
    for (const auto& l : Languages(*model_)) res->add_languages(l);
    res->set_streams_active(pool_->active());
    res->set_queue_length(pool_->waiting());
  }
  res->set_threads(config_.threads);
  res->set_streams_max(config_.streams_max);
  res->set_queue_max(config_.queue_max);
  res->set_vad_model(!config_.vad_model.empty());
  jota::v1::TranscriptionCounters* c = res->mutable_counters();
  c->set_streams(counters_.streams);
  c->set_files(counters_.files);
  c->set_utterances(counters_.utterances);
  c->set_audio_seconds(counters_.audio_samples / kRate);
  c->set_partials(counters_.partials);
  c->set_partials_skipped(counters_.partials_skipped);
  c->set_errors(counters_.errors);
  c->set_cancellations(counters_.cancellations);
  *res->mutable_build() = MakeBuildInfo("whisper.cpp", SystemInfo());
  return grpc::Status::OK;
}

grpc::Status TranscriptionService::Transcribe(grpc::ServerContext* ctx, const jota::v1::TranscribeRequest* req,
                                              jota::v1::TranscribeResponse* res) {
  std::unique_ptr<DecoderPool::Lease> lease;
  return Count(DoTranscribe(ctx, *req, res, &lease));
}

grpc::Status TranscriptionService::DoTranscribe(grpc::ServerContext* ctx, const jota::v1::TranscribeRequest& req,
                                                jota::v1::TranscribeResponse* res,
                                                std::unique_ptr<DecoderPool::Lease>* lease) {
  if (grpc::Status st = Admit(*ctx); !st.ok()) return st;
  TranscribeSettings settings;
  if (grpc::Status st = BuildTranscribeSettings(req, model_->multilingual, &settings); !st.ok()) return st;
  // Checked before decoding: the length a format implies is known from its size.
  const int64_t frames = static_cast<int64_t>(settings.audio.size() / settings.format.bytes_per_frame());
  if (frames > static_cast<int64_t>(config_.max_audio_s) * settings.format.sample_rate)
    return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                        "the audio is " + std::to_string(frames / settings.format.sample_rate) +
                            " s long; this engine takes at most " + std::to_string(config_.max_audio_s) +
                            " s (--max-audio-s)");
  std::vector<float> pcm;
  std::string error;
  if (!ConvertAll(settings.audio, settings.format, &pcm, &error))
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, error);

  if (grpc::Status st = pool_->Acquire([ctx] { return ctx->IsCancelled(); }, lease); !st.ok()) return st;
  ++counters_.files;
  counters_.audio_samples += pcm.size();
  const DecodeResult r =
      (*lease)->decoder().Decode(pcm, settings.decode, [this, ctx] { return ctx->IsCancelled() || FlushOver(); });
  if (!r.ok) {
    if (r.aborted && ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while decoding");
    // Not CANCELLED: the client did not give up, and may send the file again elsewhere.
    if (r.aborted) return Unavailable("the file was not finished in time; send it to another engine");
    return grpc::Status(grpc::StatusCode::INTERNAL, r.error);
  }
  res->set_text(r.text);
  for (const jota::v1::Segment& s : r.segments) *res->add_segments() = s;
  res->set_language(r.language);
  res->set_duration_s(static_cast<double>(pcm.size()) / kRate);
  res->set_decode_ms(r.decode_ms);
  LogInfo("transcribed", {{"request_id", settings.request_id},
                          {"audio_s", std::to_string(res->duration_s())},
                          {"decode_ms", std::to_string(static_cast<int64_t>(r.decode_ms))}});
  return grpc::Status::OK;
}

grpc::Status TranscriptionService::Stream(grpc::ServerContext* ctx, ServerStream* stream) {
  if (grpc::Status st = Admit(*ctx); !st.ok()) return Count(st);
  StreamInbox inbox(ctx, stream, config_.stream_idle_s);
  // Unlisted however the handler leaves (a throw included), before the inbox
  // is destroyed: Stop() must never wake freed memory.
  struct Listed {
    TranscriptionService* service;
    StreamInbox* inbox;
    ~Listed() {
      {
        std::lock_guard<std::mutex> lock(service->streams_mu_);
        service->streams_.erase(inbox);
      }
      service->streams_done_.notify_all();
    }
  };
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    streams_.insert(&inbox);
    if (stopping_.load()) inbox.Wake();  // Stop() ran before we were listed
  }
  Listed listed{this, &inbox};
  std::unique_ptr<DecoderPool::Lease> lease;
  grpc::Status st = Count(DoStream(ctx, stream, inbox, &lease));
  // The decoder goes back before End(): with a read pending, End()'s cancel
  // is what delivers `st`, and a client that opens its next stream on seeing
  // it must find the decoder free, not RESOURCE_EXHAUSTED.
  lease.reset();
  inbox.End(st);
  return st;
}

grpc::Status TranscriptionService::DoStream(grpc::ServerContext* ctx, ServerStream* stream, StreamInbox& inbox,
                                            std::unique_ptr<DecoderPool::Lease>* lease) {
  const grpc::Status cancelled(grpc::StatusCode::CANCELLED, "the client cancelled the stream");
  const std::string idle_limit = std::to_string(config_.stream_idle_s) + " s (--stream-idle-s)";
  jota::v1::AudioIn in;
  switch (inbox.Wait(&in)) {
    case StreamInbox::Next::kMessage: break;
    case StreamInbox::Next::kEnd:
      if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled before the config");
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the stream ended before its config message");
    case StreamInbox::Next::kIdle:
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no config message within " + idle_limit);
    case StreamInbox::Next::kStopping: return Unavailable("the stream was not started");
  }
  if (in.msg_case() != jota::v1::AudioIn::kConfig)
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be `config`; audio comes after it");
  StreamSettings settings;
  if (grpc::Status st = BuildStreamSettings(in.config(), model_->multilingual, &settings); !st.ok()) return st;

  if (grpc::Status st = pool_->Acquire([ctx] { return ctx->IsCancelled(); }, lease); !st.ok()) return st;
  ++counters_.streams;
  inbox.RestartIdleClock();

  // Only once admitted: a stream refused RESOURCE_EXHAUSTED never pays for a load.
  std::unique_ptr<SpeechClassifier> classifier;
  if (settings.vad) {
    if (config_.vad_model.empty()) {
      classifier = std::make_unique<EnergyClassifier>(settings.vad_settings.threshold_db);
    } else {
      std::string error;
      classifier = MakeSileroClassifier(config_.vad_model, 1, &error);
      if (!classifier) return grpc::Status(grpc::StatusCode::INTERNAL, error);
    }
  }

  std::mutex write_mu;  // the session writes from its decode thread too
  StreamSession session(
      std::move(settings), (*lease)->decoder(), std::move(classifier),
      static_cast<int64_t>(config_.max_audio_s) * kRate, counters_,
      [&](const jota::v1::TranscriptEvent& e) {
        std::lock_guard<std::mutex> lock(write_mu);
        return stream->Write(e);
      },
      [this, ctx] { return ctx->IsCancelled() || FlushOver(); });
  for (bool reading = true; reading;) {
    grpc::Status st;
    switch (inbox.Wait(&in)) {
      case StreamInbox::Next::kMessage:
        switch (in.msg_case()) {
          case jota::v1::AudioIn::kAudio: st = session.PushAudio(in.audio()); break;
          case jota::v1::AudioIn::kConfig:
            st = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "config may only be sent once, as the first message");
            break;
          case jota::v1::AudioIn::MSG_NOT_SET:
            st = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a message with neither config nor audio");
            break;
        }
        break;
      case StreamInbox::Next::kEnd: reading = false; break;
      case StreamInbox::Next::kIdle:
        st = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no message for " + idle_limit + "; the stream was closed");
        break;
      case StreamInbox::Next::kStopping: {
        // What came in is flushed into finals, but the call still ends
        // UNAVAILABLE: the client's audio from here on was never read, so
        // the transcript is not complete, and the rest belongs on another engine.
        grpc::Status flushed = session.Finish();
        if (ctx->IsCancelled()) return cancelled;
        if (!flushed.ok()) return flushed;
        const std::string received = SecondsText(session.samples_received());
        if (!session.flushed()) return Unavailable("the stream was cut off before the finals of its first " + received + " s were sent");
        return Unavailable("the stream's first " + received + " s were transcribed, the rest was not read");
      }
    }
    if (!st.ok()) {
      session.Cancel();
      return st;
    }
  }
  if (ctx->IsCancelled()) {
    session.Cancel();
    return cancelled;
  }
  // A cancel can end Read() a moment (~0.3 ms) before IsCancelled() says so:
  // the flush's decode polls it (and stops at a failed write).
  grpc::Status st = session.Finish();
  if (ctx->IsCancelled()) return cancelled;
  // The client half-closed, but the engine shut down before the flush ended:
  // not OK, or the client would take the transcript for complete.
  if (st.ok() && !session.flushed() && stopping_.load())
    return Unavailable("the stream was cut off before the finals of its " + SecondsText(session.samples_received()) +
                       " s were sent");
  return st;
}

}  // namespace jota::transcription
