// The transport layer: jota.v1.Transcription over gRPC. Parses and checks
// requests, admits them through the decoder pool, and hands audio to a
// StreamSession (Stream) or straight to a decoder (Transcribe).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "auth.h"
#include "counters.h"
#include "jota/v1/transcription.grpc.pb.h"
#include "model.h"
#include "scheduler.h"

namespace jota::transcription {

struct EngineConfig {
  int threads = 1;
  int streams_max = 2;
  int queue_max = 8;
  int max_audio_s = 3600;         // longest stream or file
  bool temperature_fallback = true;
  std::string vad_model;          // Silero VAD (ggml); "" = the energy detector
  int stream_idle_s = 60;         // a stream that sends nothing this long ends DEADLINE_EXCEEDED; 0 = no limit
};

class StreamInbox;

class TranscriptionService final : public jota::v1::Transcription::Service {
 public:
  TranscriptionService(BearerAuth auth, EngineConfig config);
  // Called once, from the loader thread; the service answers UNAVAILABLE before.
  void SetModel(std::unique_ptr<LoadedModel> model);
  // Shutdown: queued requests fail with UNAVAILABLE at once. Open streams
  // stop reading and flush what they received into finals; streams and
  // files get a few seconds (kShutdownFlush) to finish, and every call that
  // did not see its work through ends UNAVAILABLE (retry elsewhere).
  // Returns once the streams have ended (or a little after that time).
  void Stop();

  grpc::Status Info(grpc::ServerContext* ctx, const jota::v1::TranscriptionInfoRequest* req,
                    jota::v1::TranscriptionInfo* res) override;
  grpc::Status Transcribe(grpc::ServerContext* ctx, const jota::v1::TranscribeRequest* req,
                          jota::v1::TranscribeResponse* res) override;
  grpc::Status Stream(grpc::ServerContext* ctx,
                      grpc::ServerReaderWriter<jota::v1::TranscriptEvent, jota::v1::AudioIn>* stream) override;

 private:
  grpc::Status Admit(const grpc::ServerContext& ctx) const;
  // `lease` belongs to the caller so that it is released only after the
  // outcome is counted: Info never shows a free slot with its call uncounted.
  grpc::Status DoTranscribe(grpc::ServerContext* ctx, const jota::v1::TranscribeRequest& req,
                            jota::v1::TranscribeResponse* res, std::unique_ptr<DecoderPool::Lease>* lease);
  grpc::Status DoStream(grpc::ServerContext* ctx,
                        grpc::ServerReaderWriter<jota::v1::TranscriptEvent, jota::v1::AudioIn>* stream,
                        StreamInbox& inbox, std::unique_ptr<DecoderPool::Lease>* lease);
  grpc::Status Count(grpc::Status st);  // tallies failures in the counters
  // Shutting down, and the time work in progress had to finish is over.
  bool FlushOver() const;

  BearerAuth auth_;
  EngineConfig config_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<std::chrono::steady_clock::rep> flush_deadline_{0};  // set before stopping_
  std::mutex streams_mu_;
  std::condition_variable streams_done_;
  std::set<StreamInbox*> streams_;  // open streams, woken by Stop()
  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<DecoderPool> pool_;
  Counters counters_;
};

}  // namespace jota::transcription
