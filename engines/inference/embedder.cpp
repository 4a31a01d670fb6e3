#include "embedder.h"

#include <algorithm>
#include <future>

#include "common.h"

namespace jota::inference {

struct Embedder::Job {
  const std::vector<std::vector<llama_token>>* inputs;
  bool normalize;
  std::vector<std::vector<float>> out;
  std::string error;
  std::promise<void> done;
};

Embedder::Embedder(const LoadedModel& model, int threads) : model_(model), threads_(threads) {}

Embedder::~Embedder() {
  Stop();
  if (ctx_) llama_free(ctx_);
}

bool Embedder::Start(std::string* error) {
  n_ctx_ = std::min(llama_model_n_ctx_train(model_.model.get()), 8192);
  llama_context_params p = llama_context_default_params();
  p.n_ctx = n_ctx_;
  // Non-causal models need a whole input in one micro-batch.
  p.n_batch = n_ctx_;
  p.n_ubatch = n_ctx_;
  p.n_seq_max = n_seq_max_;
  // One KV buffer for all sequences, as llama-embedding sets it: otherwise a
  // model with a KV cache (decoder-based embedders such as Qwen3-Embedding)
  // gets n_ctx / n_seq_max cells per sequence, and an input longer than that,
  // though within max_tokens, fails to find room.
  p.kv_unified = true;
  p.embeddings = true;
  p.n_threads = threads_;
  p.n_threads_batch = threads_;
  p.no_perf = true;
  ctx_ = llama_init_from_model(model_.model.get(), p);
  if (!ctx_) {
    *error = "cannot create the embedding context";
    return false;
  }
  if (llama_pooling_type(ctx_) == LLAMA_POOLING_TYPE_NONE) {
    *error = "the embedding model has no pooling (one vector per token): give a model with pooling metadata";
    return false;
  }
  if (llama_pooling_type(ctx_) == LLAMA_POOLING_TYPE_RANK) {
    // A reranker's output is a score per input, not a vector of n_embd.
    *error = "the embedding model is a reranker (rank pooling): it scores pairs, it does not embed";
    return false;
  }
  n_embd_ = llama_model_n_embd_out(model_.model.get());
  thread_ = std::thread([this] { Loop(); });
  return true;
}

void Embedder::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

std::vector<std::vector<float>> Embedder::Embed(const std::vector<std::vector<llama_token>>& inputs, bool normalize,
                                                std::string* error) {
  Job job{&inputs, normalize, {}, {}, {}};
  auto done = job.done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      *error = "engine shutting down";
      return {};
    }
    jobs_.push_back(&job);
    cv_.notify_one();
  }
  done.wait();
  *error = job.error;
  return std::move(job.out);
}

void Embedder::Loop() {
  for (;;) {
    Job* job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, nothing left
      job = jobs_.front();
      jobs_.pop_front();
    }
    Run(*job);
    job->done.set_value();
  }
}

void Embedder::Run(Job& job) {
  const auto& inputs = *job.inputs;
  job.out.assign(inputs.size(), std::vector<float>(n_embd_));
  llama_batch batch = llama_batch_init(n_ctx_, 0, 1);
  size_t i = 0;
  while (i < inputs.size()) {
    // Pack whole inputs until the batch or the sequence limit is reached.
    common_batch_clear(batch);
    size_t first = i;
    while (i < inputs.size() && static_cast<int>(i - first) < n_seq_max_ &&
           batch.n_tokens + static_cast<int>(inputs[i].size()) <= n_ctx_) {
      for (size_t k = 0; k < inputs[i].size(); ++k)
        common_batch_add(batch, inputs[i][k], static_cast<llama_pos>(k), {static_cast<llama_seq_id>(i - first)}, true);
      ++i;
    }
    llama_memory_clear(llama_get_memory(ctx_), true);
    // 1 (no room in the KV cache) is a failure here as much as an error is.
    if (int rc = llama_decode(ctx_, batch); rc != 0) {
      job.error = "llama_decode failed for the embedding batch (" + std::to_string(rc) + ")";
      break;
    }
    for (size_t k = first; k < i; ++k) {
      const float* e = llama_get_embeddings_seq(ctx_, static_cast<llama_seq_id>(k - first));
      if (!e) {
        job.error = "the model produced no sequence embedding";
        break;
      }
      common_embd_normalize(e, job.out[k].data(), n_embd_, job.normalize ? 2 : -1);
    }
    if (!job.error.empty()) break;
  }
  llama_batch_free(batch);
  if (!job.error.empty()) job.out.clear();
}

}  // namespace jota::inference
