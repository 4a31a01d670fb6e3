#include "scheduler.h"

#include <algorithm>
#include <chrono>

namespace jota::transcription {

namespace {
// How often a queued request checks whether its client gave up: the sync
// gRPC API has no cancellation callback.
constexpr auto kCancelPoll = std::chrono::milliseconds(50);
}  // namespace

DecoderPool::Lease::~Lease() {
  decoder_.reset();  // the state's memory goes back before the next one is made
  pool_->Release();
}

DecoderPool::DecoderPool(int slots, int queue_max, Factory factory)
    : slots_(slots), queue_max_(queue_max), factory_(std::move(factory)) {}

grpc::Status DecoderPool::Acquire(const std::function<bool()>& cancelled, std::unique_ptr<Lease>* out) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (shutdown_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the engine is shutting down");
    if (active_ < slots_ && queue_.empty()) {
      ++active_;
    } else {
      if (static_cast<int>(queue_.size()) >= queue_max_)
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            "all " + std::to_string(slots_) + " decoders are busy and " + std::to_string(queue_.size()) +
                                " requests are already waiting (--streams, --queue-max)");
      const uint64_t ticket = next_ticket_++;
      queue_.push_back(ticket);
      auto leave = [&] {
        queue_.erase(std::find(queue_.begin(), queue_.end(), ticket));
        freed_.notify_all();  // the next in line may be first now
      };
      for (;;) {
        if (shutdown_) {
          leave();
          return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the engine is shutting down");
        }
        if (queue_.front() == ticket && active_ < slots_) {
          queue_.pop_front();
          ++active_;
          freed_.notify_all();
          break;
        }
        if (cancelled()) {
          leave();
          return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while waiting for a decoder");
        }
        freed_.wait_for(lock, kCancelPoll);
      }
    }
  }
  std::string error;
  std::unique_ptr<Decoder> decoder = factory_(&error);
  if (!decoder) {
    Release();
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, error);
  }
  out->reset(new Lease(this, std::move(decoder)));
  return grpc::Status::OK;
}

void DecoderPool::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  --active_;
  freed_.notify_all();
}

void DecoderPool::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  freed_.notify_all();
}

int DecoderPool::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

int DecoderPool::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(queue_.size());
}

}  // namespace jota::transcription
