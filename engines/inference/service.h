// The transport layer: jota.v1.Inference over gRPC. It validates, checks
// auth and translates; it never touches a llama context itself.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>

#include "auth.h"
#include "jota/v1/inference.grpc.pb.h"
#include "model.h"

namespace jota::inference {

struct EngineConfig {
  int ctx_size = 0;
  int slots = 1;
  int threads = 1;
  int batch_size = 512;
  int queue_max = 64;
};

class InferenceService final : public jota::v1::Inference::Service {
 public:
  InferenceService(BearerAuth auth, EngineConfig config);

  // Called by the loader thread once the models are in memory.
  void SetModels(std::unique_ptr<LoadedModel> chat, std::unique_ptr<LoadedModel> embed);
  bool ready() const { return ready_.load(); }

  grpc::Status Info(grpc::ServerContext* ctx, const jota::v1::InfoRequest* req,
                    jota::v1::InferenceInfo* res) override;
  grpc::Status Generate(grpc::ServerContext* ctx, const jota::v1::GenerateRequest* req,
                        grpc::ServerWriter<jota::v1::GenerateEvent>* writer) override;
  grpc::Status Embed(grpc::ServerContext* ctx, const jota::v1::EmbedRequest* req,
                     jota::v1::EmbedResponse* res) override;
  grpc::Status Tokenize(grpc::ServerContext* ctx, const jota::v1::TokenizeRequest* req,
                        jota::v1::TokenizeResponse* res) override;
  grpc::Status Detokenize(grpc::ServerContext* ctx, const jota::v1::DetokenizeRequest* req,
                          jota::v1::DetokenizeResponse* res) override;
  grpc::Status CountTokens(grpc::ServerContext* ctx, const jota::v1::CountTokensRequest* req,
                           jota::v1::CountTokensResponse* res) override;

 private:
  // Auth first, then readiness: UNAUTHENTICATED / UNAVAILABLE (still loading).
  grpc::Status Admit(const grpc::ServerContext& ctx) const;

  BearerAuth auth_;
  EngineConfig config_;
  std::atomic<bool> ready_{false};
  std::unique_ptr<LoadedModel> chat_, embed_;
};

}  // namespace jota::inference
