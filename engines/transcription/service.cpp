#include "service.h"

#include <filesystem>

#include "build_info.h"

namespace jota::transcription {

TranscriptionService::TranscriptionService(BearerAuth auth, EngineConfig config)
    : auth_(std::move(auth)), config_(config) {}

void TranscriptionService::SetModel(std::unique_ptr<LoadedModel> model) {
  model_ = std::move(model);
  ready_.store(true);
}

grpc::Status TranscriptionService::Admit(const grpc::ServerContext& ctx) const {
  grpc::Status st = auth_.Check(ctx);
  if (!st.ok()) return st;
  if (!ready_.load()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "model is still loading");
  return grpc::Status::OK;
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
  }
  res->set_threads(config_.threads);
  res->set_streams_max(config_.streams_max);
  res->set_queue_max(config_.queue_max);
  res->mutable_counters();
  *res->mutable_build() = MakeBuildInfo("whisper.cpp", SystemInfo());
  return grpc::Status::OK;
}

// Decoding, VAD and streaming sessions land with issue 4.
grpc::Status TranscriptionService::Transcribe(grpc::ServerContext* ctx, const jota::v1::TranscribeRequest*,
                                              jota::v1::TranscribeResponse*) {
  if (grpc::Status st = Admit(*ctx); !st.ok()) return st;
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "Transcribe is not implemented yet (issue 4)");
}

grpc::Status TranscriptionService::Stream(
    grpc::ServerContext* ctx, grpc::ServerReaderWriter<jota::v1::TranscriptEvent, jota::v1::AudioIn>*) {
  if (grpc::Status st = Admit(*ctx); !st.ok()) return st;
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "Stream is not implemented yet (issue 4)");
}

}  // namespace jota::transcription
