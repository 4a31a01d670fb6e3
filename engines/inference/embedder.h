// Embeddings from the engine's embedding model: its own llama_context on its
// own thread (the chat scheduler's context is never shared), fed in batches of
// whole inputs exactly as llama.cpp's llama-embedding does.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "model.h"

namespace jota::inference {

class Embedder {
 public:
  Embedder(const LoadedModel& model, int threads);
  ~Embedder();
  bool Start(std::string* error);
  void Stop();

  int max_tokens() const { return n_ctx_; }
  int dimensions() const { return n_embd_; }

  // Runs on the embedder thread; blocks the caller until done. Inputs must be
  // tokenized already and each at most max_tokens() long.
  std::vector<std::vector<float>> Embed(const std::vector<std::vector<llama_token>>& inputs, bool normalize,
                                        std::string* error);

 private:
  struct Job;
  void Loop();
  void Run(Job& job);

  const LoadedModel& model_;
  int threads_;
  int n_ctx_ = 0, n_embd_ = 0, n_seq_max_ = 16;
  llama_context* ctx_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job*> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace jota::inference
