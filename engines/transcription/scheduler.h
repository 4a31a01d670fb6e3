// Admission: one model, at most `slots` decoders (whisper states) at once,
// one per running stream or file; up to `queue_max` more wait in FIFO order;
// beyond that RESOURCE_EXHAUSTED. A lease frees its slot when it is dropped.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

#include <grpcpp/grpcpp.h>

#include "model.h"

namespace jota::transcription {

class DecoderPool {
 public:
  using Factory = std::function<std::unique_ptr<Decoder>(std::string* error)>;

  class Lease {
   public:
    ~Lease();
    Decoder& decoder() { return *decoder_; }

   private:
    friend class DecoderPool;
    Lease(DecoderPool* pool, std::unique_ptr<Decoder> decoder) : pool_(pool), decoder_(std::move(decoder)) {}
    DecoderPool* pool_;
    std::unique_ptr<Decoder> decoder_;
  };

  DecoderPool(int slots, int queue_max, Factory factory);

  // Waits for a free slot (polling `cancelled` while it waits). Errors:
  // RESOURCE_EXHAUSTED (queue full or no memory for a state), CANCELLED,
  // UNAVAILABLE (shutting down).
  grpc::Status Acquire(const std::function<bool()>& cancelled, std::unique_ptr<Lease>* out);
  // Wakes every waiter with UNAVAILABLE and refuses new work.
  void Shutdown();

  int active() const;
  int waiting() const;
  int slots() const { return slots_; }
  int queue_max() const { return queue_max_; }

 private:
  void Release();

  const int slots_, queue_max_;
  Factory factory_;
  mutable std::mutex mu_;
  std::condition_variable freed_;
  int active_ = 0;
  std::deque<uint64_t> queue_;  // waiters' tickets, served first come first served
  uint64_t next_ticket_ = 0;
  bool shutdown_ = false;
};

}  // namespace jota::transcription
