#include "service.h"

#include <cmath>
#include <mutex>
#include <random>

#include "build_info.h"
#include "log.h"
#include "text.h"

namespace jota::inference {

using grpc::Status;
using grpc::StatusCode;

namespace {
constexpr size_t kMaxStops = 16, kMaxStopBytes = 256, kMaxSessionIdBytes = 256, kMaxConstraintBytes = 64 * 1024;
constexpr int kMaxEmbedInputs = 1024;

// A status message travels in the grpc-message trailer. Messages echo client
// input (a role, the parser's "expecting name at <rest of the grammar>", a JSON
// error's "last read: '<64 KiB string>'"); past some tens of KiB the trailer
// is never delivered and the client hangs until its deadline. So: capped.
constexpr size_t kMaxMessageBytes = 1024;

std::string Capped(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  return s.substr(0, CompleteUtf8Prefix(s.substr(0, max))) + "...";
}

Status Invalid(const std::string& msg) { return Status(StatusCode::INVALID_ARGUMENT, Capped(msg, kMaxMessageBytes)); }

bool Finite(float v) { return std::isfinite(v); }

Status ValidateSampling(const jota::v1::SamplingParams& p, int vocab) {
  if (p.has_temperature() && !(Finite(p.temperature()) && p.temperature() >= 0 && p.temperature() <= 100))
    return Invalid("sampling.temperature must be within [0, 100]");
  if (p.has_top_k() && (p.top_k() < 0 || p.top_k() > vocab))
    return Invalid("sampling.top_k must be within [0, " + std::to_string(vocab) + "]");
  if (p.has_top_p() && !(Finite(p.top_p()) && p.top_p() > 0 && p.top_p() <= 1))
    return Invalid("sampling.top_p must be within (0, 1]");
  if (p.has_min_p() && !(Finite(p.min_p()) && p.min_p() >= 0 && p.min_p() <= 1))
    return Invalid("sampling.min_p must be within [0, 1]");
  if (p.has_repeat_penalty() && !(Finite(p.repeat_penalty()) && p.repeat_penalty() > 0 && p.repeat_penalty() <= 10))
    return Invalid("sampling.repeat_penalty must be within (0, 10]");
  if (p.has_repeat_last_n() && (p.repeat_last_n() < -1 || p.repeat_last_n() > 1 << 20))
    return Invalid("sampling.repeat_last_n must be -1 (whole context) or within [0, 1048576]");
  if (p.has_presence_penalty() && !(Finite(p.presence_penalty()) && std::fabs(p.presence_penalty()) <= 10))
    return Invalid("sampling.presence_penalty must be within [-10, 10]");
  if (p.has_frequency_penalty() && !(Finite(p.frequency_penalty()) && std::fabs(p.frequency_penalty()) <= 10))
    return Invalid("sampling.frequency_penalty must be within [-10, 10]");
  return Status::OK;
}

Status NoSuchModel(bool embedding) {
  return Status(StatusCode::FAILED_PRECONDITION, embedding
                                                     ? "this engine has no embedding model (start it with --embed-model)"
                                                     : "this engine serves no chat model (start it with --model)");
}

Status ValidateIds(const google::protobuf::RepeatedField<int32_t>& ids, int vocab, const char* field) {
  for (int i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      return Invalid(std::string(field) + "[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
                     " is not a token id (vocabulary has " + std::to_string(vocab) + ")");
  return Status::OK;
}
}  // namespace

InferenceService::InferenceService(BearerAuth auth, EngineConfig config)
    : auth_(std::move(auth)), config_(std::move(config)) {}

InferenceService::~InferenceService() { Shutdown(); }

bool InferenceService::SetModels(std::unique_ptr<LoadedModel> chat, std::unique_ptr<LoadedModel> embed,
                                 std::string* error) {
  chat_ = std::move(chat);
  embed_ = std::move(embed);
  if (chat_) {
    // --ctx-size 0 means the model's own (LoadModel put it in the info).
    if (config_.scheduler.ctx_size == 0) config_.scheduler.ctx_size = chat_->info.context_size();
    scheduler_ = std::make_unique<Scheduler>(*chat_, config_.scheduler, counters_);
    if (!scheduler_->Start(error)) return false;
  }
  if (embed_) {
    embedder_ = std::make_unique<Embedder>(*embed_, config_.threads);
    if (!embedder_->Start(error)) return false;
  }
  ready_.store(true);  // publishes the members above to the gRPC threads
  return true;
}

void InferenceService::Shutdown() {
  if (scheduler_) scheduler_->Stop();
  if (embedder_) embedder_->Stop();
}

Status InferenceService::Admit(const grpc::ServerContext& ctx) const {
  Status st = auth_.Check(ctx);
  if (!st.ok()) return st;
  return AdmitAuthorized();
}

// BearerAuth::Check takes the synchronous API's context; this is the same
// check on the callback API's.
Status InferenceService::Admit(const grpc::CallbackServerContext& ctx) const {
  if (auth_.enabled()) {
    const auto& md = ctx.client_metadata();
    auto it = md.find("authorization");
    std::string value = it == md.end() ? "" : std::string(it->second.data(), it->second.size());
    if (Status st = auth_.CheckHeader(it == md.end() ? nullptr : &value); !st.ok()) return st;
  }
  return AdmitAuthorized();
}

Status InferenceService::AdmitAuthorized() const {
  if (!ready_.load()) return Status(StatusCode::UNAVAILABLE, "model is still loading");
  return Status::OK;
}

Status InferenceService::NeedChat() const {
  if (!chat_) return NoSuchModel(false);
  return Status::OK;
}

Status InferenceService::Info(grpc::ServerContext* ctx, const jota::v1::InfoRequest*, jota::v1::InferenceInfo* res) {
  // Info answers while loading too (ready=false), so callers can show progress.
  if (Status st = auth_.Check(*ctx); !st.ok()) return st;
  bool ready = ready_.load();
  res->set_ready(ready);
  if (ready) {
    if (chat_) *res->mutable_chat_model() = chat_->info;
    if (embed_) {
      *res->mutable_embedding_model() = embed_->info;
      res->mutable_embedding_model()->set_context_size(embedder_->max_tokens());
    }
    if (scheduler_) {
      res->set_slots_busy(scheduler_->slots_busy());
      res->set_queue_length(scheduler_->queue_length());
    }
  }
  res->set_slots_total(chat_ || !ready ? config_.scheduler.slots : 0);
  res->set_queue_max(config_.scheduler.queue_max);
  res->set_threads(config_.threads);
  res->set_batch_size(config_.scheduler.batch_size);
  counters_.Fill(res->mutable_counters());
  *res->mutable_build() = MakeBuildInfo("llama.cpp", SystemInfo());
  return Status::OK;
}

Status InferenceService::RenderChat(const google::protobuf::RepeatedPtrField<jota::v1::ChatMessage>& messages,
                                    const std::string& template_override, bool add_generation_prompt,
                                    std::string* prompt) const {
  if (messages.empty()) return Invalid("messages is empty");
  for (int i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role();
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      return Invalid("messages[" + std::to_string(i) + "].role must be system, user, assistant or tool (got '" +
                     Capped(role, 64) + "')");
  }
  std::shared_ptr<ChatTemplate> tmpl = chat_->chat_template;
  if (!template_override.empty()) {
    if (template_override.size() > kMaxConstraintBytes) return Invalid("chat_template is larger than 64 KiB");
    std::string err;
    tmpl = ChatTemplate::Create(chat_->model.get(), template_override, &err);
    if (!tmpl) return Invalid("chat_template: " + err);
  }
  if (!tmpl)
    return Status(StatusCode::FAILED_PRECONDITION,
                  "the model has no chat template: pass chat_template, or send a raw prompt");
  try {
    *prompt = tmpl->Apply(messages, add_generation_prompt);
  } catch (const std::exception& e) {
    return Invalid(std::string("the chat template failed on these messages: ") + e.what());
  }
  return Status::OK;
}

Status InferenceService::BuildTask(const jota::v1::GenerateRequest& req, GenerateTask* task) const {
  const llama_vocab* vocab = chat_->vocab();
  int n_vocab = llama_vocab_n_tokens(vocab);
  switch (req.input_case()) {
    case jota::v1::GenerateRequest::kMessages: {
      std::string prompt;
      if (Status st = RenderChat(req.messages().items(), req.chat_template(), !req.no_generation_prompt(), &prompt);
          !st.ok())
        return st;
      task->prompt = inference::Tokenize(vocab, prompt, true, true);
      break;
    }
    case jota::v1::GenerateRequest::kPrompt:
      task->prompt = inference::Tokenize(vocab, req.prompt(), true, true);
      break;
    case jota::v1::GenerateRequest::kPromptTokens:
      if (Status st = ValidateIds(req.prompt_tokens().ids(), n_vocab, "prompt_tokens.ids"); !st.ok()) return st;
      task->prompt.assign(req.prompt_tokens().ids().begin(), req.prompt_tokens().ids().end());
      break;
    default:
      return Invalid("one of messages, prompt or prompt_tokens is required");
  }
  int ctx = config_.scheduler.ctx_size;
  if (task->prompt.empty()) return Invalid("the prompt is empty");
  if (static_cast<int>(task->prompt.size()) >= ctx)
    return Invalid("the prompt has " + std::to_string(task->prompt.size()) + " tokens; the context holds " +
                   std::to_string(ctx) + " per request (prompt + completion)");
  if (req.max_tokens() < 0) return Invalid("max_tokens must be >= 0 (0 = until the context is full)");
  if (req.session_id().size() > kMaxSessionIdBytes) return Invalid("session_id is longer than 256 bytes");
  if (req.stop_size() > static_cast<int>(kMaxStops)) return Invalid("at most 16 stop strings");
  for (int i = 0; i < req.stop_size(); ++i)
    if (req.stop(i).size() > kMaxStopBytes) return Invalid("stop[" + std::to_string(i) + "] is longer than 256 bytes");
  if (Status st = ValidateSampling(req.sampling(), n_vocab); !st.ok()) return st;

  std::string grammar, err;
  if (req.constraint_case() == jota::v1::GenerateRequest::kGrammar) {
    if (req.grammar().size() > kMaxConstraintBytes) return Invalid("grammar is larger than 64 KiB");
    grammar = req.grammar();
    if (grammar.empty()) return Invalid("grammar is empty");
  } else if (req.constraint_case() == jota::v1::GenerateRequest::kJsonSchema) {
    if (req.json_schema().size() > kMaxConstraintBytes) return Invalid("json_schema is larger than 64 KiB");
    grammar = JsonSchemaToGrammar(req.json_schema(), &err);
    if (grammar.empty()) return Invalid(err.empty() ? "json_schema produced no grammar" : err);
  }
  static thread_local std::mt19937 rng{std::random_device{}()};
  task->sampler = Sampler::Create(*chat_, req.sampling(), grammar, rng(), &err);
  if (!task->sampler) return Invalid(err);

  task->session_id = req.session_id();
  task->max_tokens = req.max_tokens();
  task->stop.assign(req.stop().begin(), req.stop().end());
  task->request_id = req.request_id();
  return Status::OK;
}

namespace {
// A Generate call that ends before it starts (bad request, no slot): its status only.
class RejectedStream final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit RejectedStream(Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

// Writes one request's events to its client. Pump() runs on whichever thread
// has something new: the scheduler's (an event was pushed: written at once,
// from that thread, when no write is in flight), or gRPC's (the previous
// write completed). gRPC allows one write in flight per stream; events that
// arrive meanwhile wait in the channel and go out together (TryPop).
//
// When the client goes away (cancel, deadline, broken connection) OnCancel
// tells the scheduler at once, which ends the request before its next token;
// the stream finishes only once the scheduler's last call (from Close) has
// reached Pump, so the scheduler never calls into a deleted stream: a gRPC
// thread that sees the end first (a write completing, a cancel) leaves the
// Finish to that last call instead of freeing the stream while Close is
// still on its way to it.
class GenerateStream final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit GenerateStream(std::shared_ptr<EventChannel> channel) : channel_(std::move(channel)) {
    channel_->SetListener([this](bool closed) { Pump(closed); });
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;  // the stream broke: nothing more can be written
    }
    if (!ok) channel_->Cancel();
    Pump();
  }

  void OnCancel() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
    }
    channel_->Cancel();
    Pump();
  }

  void OnDone() override { delete this; }

 private:
  // `producer_closed`: the scheduler's last call, from EventChannel::Close.
  void Pump(bool producer_closed = false) {
    bool write = false, cancelled = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (producer_closed) producer_closed_ = true;
      if (writing_ || finished_) return;
      for (;;) {
        auto r = channel_->TryPop(&event_);
        if (r == EventChannel::PopResult::kEmpty) return;
        if (r == EventChannel::PopResult::kClosed) {
          if (!producer_closed_) return;  // Close's own call to Pump is still coming: it finishes
          break;
        }
        if (cancelled_) continue;  // drain until the scheduler lets go
        writing_ = true;
        break;
      }
      write = writing_;
      if (!write) finished_ = true;
      cancelled = cancelled_;
    }
    // Outside the lock: gRPC may run OnWriteDone on another thread at once,
    // and once Finish is called this object may be deleted (OnDone) at any
    // moment, so nothing of it is touched after that. While writing_ is set
    // no other Pump gets past the check above, so event_ is ours to send.
    if (write) {
      bool own = false;
      wire_.Clear();
      if (!grpc::SerializationTraits<jota::v1::GenerateEvent>::Serialize(event_, &wire_, &own).ok()) {
        OnWriteDone(false);  // cannot happen below 2 GiB; treated as a broken stream
        return;
      }
      StartWrite(&wire_);
      return;
    }
    if (cancelled) return Finish(Status(StatusCode::CANCELLED, "generation cancelled by the client"));
    std::string unavailable = channel_->unavailable();
    Finish(unavailable.empty() ? Status::OK : Status(StatusCode::UNAVAILABLE, unavailable));
  }

  std::shared_ptr<EventChannel> channel_;
  std::mutex mu_;
  jota::v1::GenerateEvent event_;  // the event being written...
  grpc::ByteBuffer wire_;          // ...serialized: valid until OnWriteDone
  bool writing_ = false, finished_ = false, cancelled_ = false, producer_closed_ = false;
};
}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::Generate(grpc::CallbackServerContext* ctx,
                                                                    const grpc::ByteBuffer* request) {
  // The same parse, and so the same INTERNAL status on failure, as gRPC's
  // typed handlers (Deserialize consumes its buffer: it gets a copy, which
  // shares the slices).
  jota::v1::GenerateRequest req;
  grpc::ByteBuffer copy(*request);
  if (Status st = grpc::SerializationTraits<jota::v1::GenerateRequest>::Deserialize(&copy, &req); !st.ok())
    return new RejectedStream(st);
  if (Status st = Admit(*ctx); !st.ok()) return new RejectedStream(st);
  if (Status st = NeedChat(); !st.ok()) return new RejectedStream(st);
  auto task = std::make_unique<GenerateTask>();
  if (Status st = BuildTask(req, task.get()); !st.ok()) return new RejectedStream(st);
  auto channel = std::make_shared<EventChannel>();
  task->channel = channel;
  // The stream listens before the scheduler can push `started`.
  auto* stream = new GenerateStream(channel);
  auto result = scheduler_->Submit(std::move(task));
  if (result == Scheduler::SubmitResult::kQueued) return stream;
  // Not queued: the task (the only producer) is gone, so nothing calls the
  // stream, which gRPC never saw.
  delete stream;
  if (result == Scheduler::SubmitResult::kQueueFull)
    return new RejectedStream(Status(StatusCode::RESOURCE_EXHAUSTED,
                                     "all " + std::to_string(config_.scheduler.slots) +
                                         " slots are busy and the wait queue (" +
                                         std::to_string(config_.scheduler.queue_max) + ") is full"));
  return new RejectedStream(Status(StatusCode::UNAVAILABLE, "engine shutting down"));
}

Status InferenceService::Embed(grpc::ServerContext* ctx, const jota::v1::EmbedRequest* req,
                               jota::v1::EmbedResponse* res) {
  if (Status st = Admit(*ctx); !st.ok()) return st;
  if (!embedder_) return NoSuchModel(true);
  if (req->inputs().empty()) return Invalid("inputs is empty");
  if (req->inputs_size() > kMaxEmbedInputs) return Invalid("at most 1024 inputs per call");
  std::vector<std::vector<llama_token>> tokens;
  int total = 0;
  for (int i = 0; i < req->inputs_size(); ++i) {
    tokens.push_back(inference::Tokenize(embed_->vocab(), req->inputs(i), true, true));
    if (tokens.back().empty()) return Invalid("inputs[" + std::to_string(i) + "] is empty");
    if (static_cast<int>(tokens.back().size()) > embedder_->max_tokens())
      return Invalid("inputs[" + std::to_string(i) + "] has " + std::to_string(tokens.back().size()) +
                     " tokens; the embedding model takes at most " + std::to_string(embedder_->max_tokens()));
    total += static_cast<int>(tokens.back().size());
  }
  std::string err;
  auto vectors = embedder_->Embed(tokens, req->normalize(), &err);
  if (!err.empty()) {
    counters_.errors++;
    return Status(StatusCode::INTERNAL, err);
  }
  for (size_t i = 0; i < vectors.size(); ++i) {
    auto* e = res->add_embeddings();
    e->mutable_values()->Assign(vectors[i].begin(), vectors[i].end());
    e->set_tokens(static_cast<int>(tokens[i].size()));
  }
  counters_.embeddings += vectors.size();
  res->set_model(embed_->info.name());
  res->set_dimensions(embedder_->dimensions());
  res->set_total_tokens(total);
  return Status::OK;
}

Status InferenceService::Tokenize(grpc::ServerContext* ctx, const jota::v1::TokenizeRequest* req,
                                  jota::v1::TokenizeResponse* res) {
  if (Status st = Admit(*ctx); !st.ok()) return st;
  const LoadedModel* m = req->embedding_model() ? embed_.get() : chat_.get();
  if (!m) return NoSuchModel(req->embedding_model());
  for (llama_token t : inference::Tokenize(m->vocab(), req->text(), req->add_special(), req->parse_special()))
    res->add_ids(t);
  return Status::OK;
}

Status InferenceService::Detokenize(grpc::ServerContext* ctx, const jota::v1::DetokenizeRequest* req,
                                    jota::v1::DetokenizeResponse* res) {
  if (Status st = Admit(*ctx); !st.ok()) return st;
  const LoadedModel* m = req->embedding_model() ? embed_.get() : chat_.get();
  if (!m) return NoSuchModel(req->embedding_model());
  if (Status st = ValidateIds(req->ids(), llama_vocab_n_tokens(m->vocab()), "ids"); !st.ok()) return st;
  std::string text = inference::Detokenize(m->vocab(), std::vector<llama_token>(req->ids().begin(), req->ids().end()));
  res->set_text(SanitizeUtf8(text));
  return Status::OK;
}

Status InferenceService::CountTokens(grpc::ServerContext* ctx, const jota::v1::CountTokensRequest* req,
                                     jota::v1::CountTokensResponse* res) {
  if (Status st = Admit(*ctx); !st.ok()) return st;
  if (Status st = NeedChat(); !st.ok()) return st;
  std::string prompt;
  if (Status st = RenderChat(req->messages(), req->chat_template(), !req->no_generation_prompt(), &prompt); !st.ok())
    return st;
  res->set_tokens(static_cast<int>(inference::Tokenize(chat_->vocab(), prompt, true, true).size()));
  res->set_context_size(config_.scheduler.ctx_size);
  return Status::OK;
}

}  // namespace jota::inference
