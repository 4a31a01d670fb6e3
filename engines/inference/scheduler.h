// The scheduler: ONE thread owns the llama_context, the slots and the batch
// (like llama-server's server_context). gRPC threads never touch them: they
// Submit() a typed task and read typed events from its EventChannel. (The
// channel's listener starts the gRPC write of each event from this thread,
// without blocking it: see service.cpp's GenerateStream.)
//
// Each step builds one llama_batch holding the next token of every generating
// slot plus a chunk of prompt for slots still prefilling, so a new request
// joins the running batch at once and long prompts never stall the others for
// more than one chunk. Slots remember their tokens: a request with a session
// id returns to its slot and only the part of its prompt past the longest
// common prefix is prefilled; evicted sessions go to disk (SessionStore).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "channel.h"
#include "model.h"
#include "sampler.h"
#include "session_store.h"
#include "text.h"

namespace jota::inference {

using Clock = std::chrono::steady_clock;

struct GenerateTask {
  std::vector<llama_token> prompt;
  std::string session_id;
  std::unique_ptr<Sampler> sampler;
  int max_tokens = 0;  // 0: until the slot's context is full
  std::vector<std::string> stop;
  std::string request_id;
  std::shared_ptr<EventChannel> channel;
  Clock::time_point enqueued;
};

struct SchedulerConfig {
  int ctx_size = 4096;  // per slot
  int slots = 4;
  int threads = 1;
  int batch_size = 512;
  int queue_max = 64;
  std::string state_dir;
};

struct Counters {
  std::atomic<uint64_t> requests{0}, prompt_tokens{0}, cached_tokens{0}, generated_tokens{0}, cancellations{0},
      errors{0}, embeddings{0}, sessions_saved{0}, sessions_restored{0}, tokens_after_cancel{0};
  void Fill(jota::v1::InferenceCounters* out) const;
};

class Scheduler {
 public:
  Scheduler(const LoadedModel& model, SchedulerConfig config, Counters& counters);
  ~Scheduler();

  bool Start(std::string* error);
  // Finishes running requests as cancelled, saves sessions to disk, joins.
  void Stop();

  enum class SubmitResult { kQueued, kQueueFull, kStopped };
  SubmitResult Submit(std::unique_ptr<GenerateTask> task);

  int slots_busy() const { return busy_.load(); }
  int queue_length() const;
  int ctx_per_slot() const { return config_.ctx_size; }

 private:
  struct Slot;
  void Loop();
  void Admit();
  void Prepare(Slot& slot, std::unique_ptr<GenerateTask> task);
  Slot* PickSlot(const GenerateTask& task);
  void Evict(Slot& slot);
  void Step();
  void HandleToken(Slot& slot, llama_token token);
  void Finish(Slot& slot, jota::v1::FinishReason reason, const std::string& error = "",
              const std::string& stop = "");
  void EmitDelta(Slot& slot, const std::string& text);

  const LoadedModel& model_;
  SchedulerConfig config_;
  Counters& counters_;
  llama_context* ctx_ = nullptr;
  llama_batch batch_{};
  std::unique_ptr<SessionStore> store_;
  std::vector<std::unique_ptr<Slot>> slots_;
  // The slot whose prompt gets first claim on the batch's room this step; it
  // moves on every step (see Step).
  size_t prefill_first_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<GenerateTask>> queue_;
  bool stopping_ = false;
  std::atomic<int> busy_{0};
  std::thread thread_;
};

}  // namespace jota::inference
