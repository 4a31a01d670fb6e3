// The transport layer: jota.v1.Inference over gRPC. It checks auth,
// validates and translates requests into typed tasks; it never touches a
// llama_context (the Scheduler and Embedder threads own theirs).
#pragma once

#include <atomic>
#include <memory>

#include "auth.h"
#include "embedder.h"
#include "jota/v1/inference.grpc.pb.h"
#include "model.h"
#include "scheduler.h"

namespace jota::inference {

struct EngineConfig {
  SchedulerConfig scheduler;
  int threads = 1;
};

// Generate uses gRPC's callback API (a write reactor, service.cpp's
// GenerateStream): events are written as the scheduler produces them and a
// cancelled or expired call is reported by OnCancel, with no thread per
// stream polling for either. It is the raw (ByteBuffer) flavour so that a
// request that does not parse still gets INTERNAL, as from a synchronous
// method (the typed callback handler answers UNIMPLEMENTED). The other
// methods are plain synchronous calls.
class InferenceService final
    : public jota::v1::Inference::WithRawCallbackMethod_Generate<jota::v1::Inference::Service> {
 public:
  InferenceService(BearerAuth auth, EngineConfig config);
  ~InferenceService() override;

  // Called by the loader thread once the models are in memory: creates the
  // contexts and threads. On failure the engine cannot serve.
  bool SetModels(std::unique_ptr<LoadedModel> chat, std::unique_ptr<LoadedModel> embed, std::string* error);
  // Stops the scheduler (running requests end as cancelled, sessions are saved).
  void Shutdown();

  grpc::Status Info(grpc::ServerContext* ctx, const jota::v1::InfoRequest* req,
                    jota::v1::InferenceInfo* res) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* ctx,
                                                      const grpc::ByteBuffer* request) override;
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
  grpc::Status Admit(const grpc::CallbackServerContext& ctx) const;
  grpc::Status AdmitAuthorized() const;
  grpc::Status NeedChat() const;
  // Chat messages -> prompt text through the model's (or the given) template.
  grpc::Status RenderChat(const google::protobuf::RepeatedPtrField<jota::v1::ChatMessage>& messages,
                          const std::string& template_override, bool add_generation_prompt,
                          std::string* prompt) const;
  grpc::Status BuildTask(const jota::v1::GenerateRequest& req, GenerateTask* task) const;

  BearerAuth auth_;
  EngineConfig config_;
  std::atomic<bool> ready_{false};
  std::unique_ptr<LoadedModel> chat_, embed_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Embedder> embedder_;
  Counters counters_;
};

}  // namespace jota::inference
