// The model layer: llama.cpp calls only. Loads GGUF files, describes them,
// tokenizes, and renders chat templates. Everything here is safe to call from
// gRPC threads: none of it touches a llama_context.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "jota/v1/inference.pb.h"
#include "llama.h"

struct common_chat_templates;

namespace jota::inference {

struct ModelDeleter { void operator()(llama_model* m) const; };
using ModelPtr = std::unique_ptr<llama_model, ModelDeleter>;

struct SamplerDeleter { void operator()(llama_sampler* s) const; };
using SamplerPtr = std::unique_ptr<llama_sampler, SamplerDeleter>;

// Process-wide llama.cpp set-up (backend, log routing into Jota's JSON log).
void InitBackend();
std::string SystemInfo();
// Makes a LoadModel in progress give up (at shutdown during a long load).
void CancelLoading();

class ChatTemplate;
struct TokenGroups;

struct LoadedModel {
  ModelPtr model;
  std::string path;
  jota::v1::ModelInfo info;
  // Identifies weights + shapes, so saved KV state is never restored into another model.
  uint64_t fingerprint = 0;
  std::shared_ptr<ChatTemplate> chat_template;  // null when the model has none
  std::shared_ptr<const TokenGroups> token_groups;  // for fast grammar sampling (sampler.h)

  const llama_vocab* vocab() const { return llama_model_get_vocab(model.get()); }
};

// Loads `path`; on failure returns nullptr and fills `error`.
std::unique_ptr<LoadedModel> LoadModel(const std::string& path, int ctx_size, std::string* error);

std::vector<llama_token> Tokenize(const llama_vocab* vocab, const std::string& text, bool add_special,
                                  bool parse_special);
// The text of one token (control tokens render as "" unless `special`).
std::string TokenPiece(const llama_vocab* vocab, llama_token token, bool special = false);
std::string Detokenize(const llama_vocab* vocab, const std::vector<llama_token>& tokens);

// A Jinja chat template (llama.cpp's common/chat), the model's own or given per request.
class ChatTemplate {
 public:
  // `source` empty: the model's own template (returns null if it has none).
  static std::shared_ptr<ChatTemplate> Create(const llama_model* model, const std::string& source,
                                              std::string* error);
  ~ChatTemplate();
  // Renders the messages; throws std::exception with the template engine's message.
  std::string Apply(const google::protobuf::RepeatedPtrField<jota::v1::ChatMessage>& messages,
                    bool add_generation_prompt) const;

 private:
  ChatTemplate() = default;
  common_chat_templates* tmpls_ = nullptr;
};

// llama.cpp's grammar sampler for `grammar` (root rule "root"), or null with
// the parser's own message in `error`. `matches_tokens` (optional) is set when
// the grammar refers to token ids rather than text.
llama_sampler* InitGrammarSampler(const llama_vocab* vocab, const std::string& grammar, std::string* error,
                                  bool* matches_tokens = nullptr);

// JSON Schema -> GBNF (llama.cpp's converter). Returns "" and fills `error` on a bad schema.
std::string JsonSchemaToGrammar(const std::string& schema, std::string* error);

}  // namespace jota::inference
