// The hand-over between the scheduler thread (producer) and the gRPC thread
// serving one call (consumer). The consumer flags cancellation here; the
// scheduler checks it before every token it decodes for that request.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "jota/v1/inference.pb.h"

namespace jota::inference {

class EventChannel {
 public:
  void Push(jota::v1::GenerateEvent ev) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(ev));
    cv_.notify_one();
  }
  // After the last event; Pop then reports the end once the queue drains.
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_one();
  }

  enum class PopResult { kEvent, kTimeout, kClosed };
  PopResult Pop(jota::v1::GenerateEvent* ev, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !events_.empty() || closed_; });
    if (!events_.empty()) {
      *ev = std::move(events_.front());
      events_.pop_front();
      return PopResult::kEvent;
    }
    return closed_ ? PopResult::kClosed : PopResult::kTimeout;
  }

  void Cancel() { cancelled_.store(true, std::memory_order_release); }
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<jota::v1::GenerateEvent> events_;
  bool closed_ = false;
  std::atomic<bool> cancelled_{false};
};

}  // namespace jota::inference
