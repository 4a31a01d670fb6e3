#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace jota::inference {

namespace {
// The text the grammar matches a token against (llama_grammar_apply_impl uses
// the special-rendered piece).
std::string GrammarPiece(const llama_vocab* vocab, llama_token id) {
  char buf[256];
  int n = llama_token_to_piece(vocab, id, buf, sizeof buf, 0, true);
  if (n < 0) {
    std::string s(static_cast<size_t>(-n), '\0');
    llama_token_to_piece(vocab, id, s.data(), static_cast<int32_t>(s.size()), 0, true);
    return s;
  }
  return std::string(buf, static_cast<size_t>(n));
}

void AddShaping(llama_sampler* chain, const llama_vocab* vocab, const jota::v1::SamplingParams& p) {
  float repeat = p.has_repeat_penalty() ? p.repeat_penalty() : 1.0f;
  float freq = p.frequency_penalty(), presence = p.presence_penalty();
  if (repeat != 1.0f || freq != 0.0f || presence != 0.0f) {
    int last_n = p.has_repeat_last_n() ? p.repeat_last_n() : 64;
    llama_sampler_chain_add(chain, llama_sampler_init_penalties(llama_vocab_n_tokens(vocab), last_n, repeat, freq, presence));
  }
  float temp = p.has_temperature() ? p.temperature() : 0.0f;
  if (temp <= 0.0f) return;
  if (p.has_top_k() && p.top_k() > 0) llama_sampler_chain_add(chain, llama_sampler_init_top_k(p.top_k()));
  if (p.has_top_p() && p.top_p() < 1.0f) llama_sampler_chain_add(chain, llama_sampler_init_top_p(p.top_p(), 1));
  if (p.has_min_p() && p.min_p() > 0.0f) llama_sampler_chain_add(chain, llama_sampler_init_min_p(p.min_p(), 1));
  llama_sampler_chain_add(chain, llama_sampler_init_temp(temp));
}

SamplerPtr NewChain() {
  llama_sampler_chain_params cp = llama_sampler_chain_default_params();
  cp.no_perf = true;
  return SamplerPtr(llama_sampler_chain_init(cp));
}
}  // namespace

std::shared_ptr<const TokenGroups> TokenGroups::Build(const llama_vocab* vocab) {
  auto g = std::make_shared<TokenGroups>();
  g->probe.fill(-1);
  int n = llama_vocab_n_tokens(vocab);
  for (llama_token id = 0; id < n; ++id) {
    std::string piece = GrammarPiece(vocab, id);
    if (llama_vocab_is_eog(vocab, id) || piece.empty() || piece[0] == 0) {
      g->other.push_back(id);
      continue;
    }
    auto b = static_cast<unsigned char>(piece[0]);
    g->by_first_byte[b].push_back(id);
    if (piece.size() == 1 && g->probe[b] < 0) g->probe[b] = id;
  }
  return g;
}

std::unique_ptr<Sampler> Sampler::Create(const LoadedModel& model, const jota::v1::SamplingParams& p,
                                         const std::string& grammar, uint32_t default_seed, std::string* error) {
  const llama_vocab* vocab = model.vocab();
  std::unique_ptr<Sampler> s(new Sampler());
  s->n_vocab_ = llama_vocab_n_tokens(vocab);
  s->greedy_ = !(p.has_temperature() && p.temperature() > 0.0f);
  uint32_t seed = p.has_seed() ? p.seed() : default_seed;
  if (grammar.empty()) {
    s->chain_ = NewChain();
    AddShaping(s->chain_.get(), vocab, p);
    s->argmax_ = s->greedy_ && llama_sampler_chain_n(s->chain_.get()) == 0;
    llama_sampler_chain_add(s->chain_.get(), s->greedy_ ? llama_sampler_init_greedy() : llama_sampler_init_dist(seed));
    return s;
  }
  llama_sampler* g = InitGrammarSampler(vocab, grammar, error, &s->by_token_);
  if (g == nullptr) return nullptr;
  s->grammar_.reset(g);
  s->shape_ = NewChain();
  AddShaping(s->shape_.get(), vocab, p);
  s->rng_.seed(seed);
  s->groups_ = model.token_groups;
  return s;
}

llama_token Sampler::Sample(llama_context* ctx, int idx) {
  if (argmax_) return Argmax(ctx, idx);
  if (!grammar_) return llama_sampler_sample(chain_.get(), ctx, idx);
  llama_token tok = SampleConstrained(ctx, idx);
  llama_sampler_accept(grammar_.get(), tok);
  llama_sampler_accept(shape_.get(), tok);
  return tok;
}

// What llama_sampler_sample() does with a chain of only the greedy sampler,
// without its per-token copy of the row into a vocabulary-sized candidate
// array (50k-150k entries, 12 bytes each) and the scan of that copy: the
// first index of the largest logit, by the same strict '>' as
// llama_sampler_greedy_apply, so ties and NaNs resolve to the same id. The
// greedy sampler keeps no state, so there is nothing to accept. (A backend
// sampler could have picked already: Jota's contexts configure none.)
llama_token Sampler::Argmax(llama_context* ctx, int idx) const {
  const float* logits = llama_get_logits_ith(ctx, idx);
  if (logits == nullptr) throw std::runtime_error("no logits for batch row " + std::to_string(idx));
  llama_token best = 0;
  float best_logit = logits[0];
  for (llama_token id = 1; id < n_vocab_; ++id) {
    if (logits[id] > best_logit) {
      best = id;
      best_logit = logits[id];
    }
  }
  return best;
}

bool Sampler::Accepts(llama_token tok) {
  llama_token_data d{tok, 0.0f, 0.0f};
  llama_token_data_array one{&d, 1, -1, false};
  llama_sampler_apply(grammar_.get(), &one);
  return std::isfinite(d.logit);
}

// Greedy: the highest logit. Otherwise a draw from softmax(logits).
llama_token Sampler::Pick(llama_token_data_array& arr) {
  size_t best = 0;
  for (size_t i = 1; i < arr.size; ++i)
    if (arr.data[i].logit > arr.data[best].logit) best = i;
  if (greedy_ || !std::isfinite(arr.data[best].logit)) return arr.data[best].id;
  float max = arr.data[best].logit;
  double sum = 0;
  for (size_t i = 0; i < arr.size; ++i) sum += std::isfinite(arr.data[i].logit) ? std::exp(arr.data[i].logit - max) : 0.0;
  double r = std::uniform_real_distribution<double>(0.0, sum)(rng_);
  for (size_t i = 0; i < arr.size; ++i) {
    if (!std::isfinite(arr.data[i].logit)) continue;
    r -= std::exp(arr.data[i].logit - max);
    if (r <= 0) return arr.data[i].id;
  }
  return arr.data[best].id;
}

llama_token Sampler::SampleConstrained(llama_context* ctx, int idx) {
  const float* logits = llama_get_logits_ith(ctx, idx);
  // 1. Draws from the unconstrained (shaped) distribution, as llama-server does.
  buf_.resize(n_vocab_);
  for (llama_token id = 0; id < n_vocab_; ++id) buf_[id] = {id, logits[id], 0.0f};
  llama_token_data_array full{buf_.data(), buf_.size(), -1, false};
  llama_sampler_apply(shape_.get(), &full);
  if (greedy_) {
    llama_token tok = Pick(full);
    if (Accepts(tok)) return tok;
  } else {
    // One softmax, several draws: each draw is a binary search in the CDF.
    float max = -INFINITY;
    for (size_t i = 0; i < full.size; ++i) max = std::max(max, full.data[i].logit);
    cdf_.resize(full.size);
    double sum = 0;
    for (size_t i = 0; i < full.size; ++i) cdf_[i] = sum += std::isfinite(full.data[i].logit) ? std::exp(full.data[i].logit - max) : 0.0;
    for (int attempt = 0; attempt < 8 && sum > 0; ++attempt) {
      double r = std::uniform_real_distribution<double>(0.0, sum)(rng_);
      size_t i = std::min<size_t>(std::upper_bound(cdf_.begin(), cdf_.end(), r) - cdf_.begin(), full.size - 1);
      if (Accepts(full.data[i].id)) return full.data[i].id;
    }
  }
  // 2. The exact constrained distribution, over the groups that can pass.
  if (by_token_) {
    // Token references (<[id]>, <|name|>) are matched by id, not by the first
    // byte of the text, so the probes say nothing: check the whole vocabulary.
    buf_.resize(n_vocab_);
    for (llama_token id = 0; id < n_vocab_; ++id) buf_[id] = {id, logits[id], 0.0f};
    return PickAllowed();
  }
  std::array<llama_token_data, 256> probes{};
  std::array<unsigned char, 256> probe_byte{};
  size_t n_probes = 0;
  for (int b = 0; b < 256; ++b) {
    if (groups_->probe[b] < 0) continue;
    probe_byte[n_probes] = static_cast<unsigned char>(b);
    probes[n_probes++] = {groups_->probe[b], 0.0f, 0.0f};
  }
  llama_token_data_array probe_arr{probes.data(), n_probes, -1, false};
  llama_sampler_apply(grammar_.get(), &probe_arr);  // only sets rejected logits to -inf, in place
  std::array<bool, 256> open{};
  open.fill(true);  // a byte without a probe token is always checked in full
  for (size_t i = 0; i < n_probes; ++i)
    if (!std::isfinite(probes[i].logit)) open[probe_byte[i]] = false;
  buf_.clear();
  for (int b = 0; b < 256; ++b)
    if (open[b])
      for (llama_token id : groups_->by_first_byte[b]) buf_.push_back({id, logits[id], 0.0f});
  for (llama_token id : groups_->other) buf_.push_back({id, logits[id], 0.0f});
  return PickAllowed();
}

// Picks among buf_ what the grammar allows. When it allows nothing (a
// grammar naming a token the model cannot produce after this text) there is
// no token to accept: llama_sampler_accept would throw "Unexpected empty
// grammar stack" on the scheduler thread and end the process.
llama_token Sampler::PickAllowed() {
  llama_token_data_array cands{buf_.data(), buf_.size(), -1, false};
  llama_sampler_apply(grammar_.get(), &cands);
  bool any = false;
  for (size_t i = 0; i < cands.size && !any; ++i) any = std::isfinite(cands.data[i].logit);
  if (!any) throw std::runtime_error("the grammar allows no token at this point");
  llama_sampler_apply(shape_.get(), &cands);
  return Pick(cands);
}

}  // namespace jota::inference
