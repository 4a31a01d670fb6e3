#include "service.h"

#include "build_info.h"

namespace jota::inference {

InferenceService::InferenceService(BearerAuth auth, EngineConfig config)
    : auth_(std::move(auth)), config_(config) {}

void InferenceService::SetModels(std::unique_ptr<LoadedModel> chat, std::unique_ptr<LoadedModel> embed) {
  chat_ = std::move(chat);
  embed_ = std::move(embed);
  ready_.store(true);  // publishes chat_/embed_ to the gRPC threads
}

grpc::Status InferenceService::Admit(const grpc::ServerContext& ctx) const {
  grpc::Status st = auth_.Check(ctx);
  if (!st.ok()) return st;
  if (!ready_.load()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "model is still loading");
  return grpc::Status::OK;
}

grpc::Status InferenceService::Info(grpc::ServerContext* ctx, const jota::v1::InfoRequest*,
                                    jota::v1::InferenceInfo* res) {
  // Info answers while loading too (ready=false), so callers can show progress.
  if (grpc::Status st = auth_.Check(*ctx); !st.ok()) return st;
  res->set_ready(ready_.load());
  if (ready_.load()) {
    if (chat_) *res->mutable_chat_model() = chat_->info;
    if (embed_) *res->mutable_embedding_model() = embed_->info;
  }
  res->set_slots_total(config_.slots);
  res->set_queue_max(config_.queue_max);
  res->set_threads(config_.threads);
  res->set_batch_size(config_.batch_size);
  res->mutable_counters();
  *res->mutable_build() = MakeBuildInfo("llama.cpp", SystemInfo());
  return grpc::Status::OK;
}

// The scheduler (slots, batching, KV reuse) that serves these lands with
// issue 3; until then they say so precisely instead of pretending.
#define JOTA_NOT_YET(name)                                                                   \
  if (grpc::Status st = Admit(*ctx); !st.ok()) return st;                                    \
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, name " is not implemented yet (issue 3)")

grpc::Status InferenceService::Generate(grpc::ServerContext* ctx, const jota::v1::GenerateRequest*,
                                        grpc::ServerWriter<jota::v1::GenerateEvent>*) {
  JOTA_NOT_YET("Generate");
}
grpc::Status InferenceService::Embed(grpc::ServerContext* ctx, const jota::v1::EmbedRequest*,
                                     jota::v1::EmbedResponse*) {
  JOTA_NOT_YET("Embed");
}
grpc::Status InferenceService::Tokenize(grpc::ServerContext* ctx, const jota::v1::TokenizeRequest*,
                                        jota::v1::TokenizeResponse*) {
  JOTA_NOT_YET("Tokenize");
}
grpc::Status InferenceService::Detokenize(grpc::ServerContext* ctx, const jota::v1::DetokenizeRequest*,
                                          jota::v1::DetokenizeResponse*) {
  JOTA_NOT_YET("Detokenize");
}
grpc::Status InferenceService::CountTokens(grpc::ServerContext* ctx, const jota::v1::CountTokensRequest*,
                                           jota::v1::CountTokensResponse*) {
  JOTA_NOT_YET("CountTokens");
}

}  // namespace jota::inference
