// The transport layer: jota.v1.Transcription over gRPC.
#pragma once

#include <atomic>
#include <memory>

#include "auth.h"
#include "jota/v1/transcription.grpc.pb.h"
#include "model.h"

namespace jota::transcription {

struct EngineConfig {
  int threads = 1;
  int streams_max = 2;
  int queue_max = 8;
};

class TranscriptionService final : public jota::v1::Transcription::Service {
 public:
  TranscriptionService(BearerAuth auth, EngineConfig config);
  void SetModel(std::unique_ptr<LoadedModel> model);

  grpc::Status Info(grpc::ServerContext* ctx, const jota::v1::TranscriptionInfoRequest* req,
                    jota::v1::TranscriptionInfo* res) override;
  grpc::Status Transcribe(grpc::ServerContext* ctx, const jota::v1::TranscribeRequest* req,
                          jota::v1::TranscribeResponse* res) override;
  grpc::Status Stream(grpc::ServerContext* ctx,
                      grpc::ServerReaderWriter<jota::v1::TranscriptEvent, jota::v1::AudioIn>* stream) override;

 private:
  grpc::Status Admit(const grpc::ServerContext& ctx) const;

  BearerAuth auth_;
  EngineConfig config_;
  std::atomic<bool> ready_{false};
  std::unique_ptr<LoadedModel> model_;
};

}  // namespace jota::transcription
