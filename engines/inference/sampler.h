// Token sampling for one request.
//
// Without a grammar this is llama.cpp's own sampler chain and
// llama_sampler_sample(), so greedy output is exactly llama.cpp's. Plain
// greedy (temperature 0, no penalties) skips the chain: it is an argmax over
// the logits row, the same comparison llama.cpp's greedy sampler makes.
//
// With a grammar, llama.cpp's grammar sampler checks every token of the
// vocabulary at every step (151k for Qwen2: ~30 ms a token here). Two exact
// shortcuts avoid most of that:
//  1. like llama-server, draw from the unconstrained distribution first and
//     keep the token when the grammar accepts it (checking one token is cheap);
//  2. otherwise check only the tokens whose first byte the grammar can accept
//     now. The grammar rejects a token by its first character, and byte-level
//     vocabularies have a one-byte token for every byte, so probing those
//     ≤256 tokens tells which first-byte groups can pass at all.
#pragma once

#include <array>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "jota/v1/inference.pb.h"
#include "model.h"

namespace jota::inference {

// Per model, built once: the vocabulary grouped by the first byte of each
// token's text as the grammar sees it.
struct TokenGroups {
  std::array<llama_token, 256> probe;                // the token whose text is exactly that byte, or -1
  std::array<std::vector<llama_token>, 256> by_first_byte;
  std::vector<llama_token> other;                    // end-of-generation and empty tokens
  static std::shared_ptr<const TokenGroups> Build(const llama_vocab* vocab);
};

class Sampler {
 public:
  // Returns null and fills `error` when the grammar does not parse (with the
  // parser's own message).
  static std::unique_ptr<Sampler> Create(const LoadedModel& model, const jota::v1::SamplingParams& params,
                                         const std::string& grammar, uint32_t default_seed, std::string* error);
  // Samples from row `idx` of the context's last logits and records the token.
  // Throws std::runtime_error when the grammar allows no token.
  llama_token Sample(llama_context* ctx, int idx);

 private:
  Sampler() = default;
  llama_token Argmax(llama_context* ctx, int idx) const;
  llama_token SampleConstrained(llama_context* ctx, int idx);
  bool Accepts(llama_token tok);
  llama_token Pick(llama_token_data_array& arr);
  llama_token PickAllowed();

  SamplerPtr chain_;    // no grammar: the full llama.cpp chain, greedy/dist included
  SamplerPtr grammar_;  // grammar path: the grammar, and...
  SamplerPtr shape_;    // ...penalties + truncation + temperature, without the final pick
  bool greedy_ = true;
  bool argmax_ = false;    // no grammar, greedy, nothing before the pick: Argmax()
  bool by_token_ = false;  // the grammar refers to token ids: no by-first-byte shortcut
  std::mt19937 rng_;
  std::shared_ptr<const TokenGroups> groups_;
  int n_vocab_ = 0;
  std::vector<llama_token_data> buf_;
  std::vector<double> cdf_;
};

}  // namespace jota::inference
