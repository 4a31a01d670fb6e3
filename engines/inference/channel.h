// The hand-over between the scheduler thread (producer) and the gRPC stream
// serving one call (consumer). The consumer flags cancellation here; the
// scheduler checks it before every token it decodes for that request.
//
// The consumer does not wait on the channel: it registers a listener that
// Push() and Close() call on the producer's thread, so an event is written
// the moment it exists and no thread wakes up to poll (a 5 ms poll loop here
// used to wake every gRPC stream's thread ~2-5 times per token for nothing).
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

#include "jota/v1/inference.pb.h"

namespace jota::inference {

class EventChannel {
 public:
  // Set before the channel is handed to the producer. Called on the
  // producer's thread (Push and Close are only called there), without the
  // channel's lock held: after each Push with closed = false, and once from
  // Close with closed = true; never again after that call.
  //
  // The consumer must not end its stream (and so free itself) on seeing the
  // end in TryPop before that last call has reached it: Close sets the end
  // before it calls the listener, and a consumer that finished in between
  // would be freed under the producer's feet.
  void SetListener(std::function<void(bool closed)> listener) { listener_ = std::move(listener); }

  void Push(jota::v1::GenerateEvent ev) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(std::move(ev));
    }
    if (listener_) listener_(false);
  }
  // After the last event; TryPop then reports the end once the queue drains.
  // `unavailable`, when not empty, says the request was never served (the
  // engine is shutting down): the call ends UNAVAILABLE with it, so that the
  // client can send it elsewhere, instead of OK with no events.
  void Close(std::string unavailable = {}) {
    std::function<void(bool)> last;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      unavailable_ = std::move(unavailable);
      last = std::move(listener_);
      listener_ = nullptr;
    }
    if (last) last(true);
  }
  std::string unavailable() const {
    std::lock_guard<std::mutex> lock(mu_);
    return unavailable_;
  }

  enum class PopResult { kEvent, kEmpty, kClosed };
  // Takes the next event without waiting. Deltas that queued up behind a
  // write still in flight go out as one delta (texts and ids concatenated,
  // the first one's index): the client cannot tell, and a stream whose reader
  // fell behind catches up in one message instead of one per token.
  PopResult TryPop(jota::v1::GenerateEvent* ev) {
    std::lock_guard<std::mutex> lock(mu_);
    if (events_.empty()) return closed_ ? PopResult::kClosed : PopResult::kEmpty;
    *ev = std::move(events_.front());
    events_.pop_front();
    if (ev->has_delta()) {
      auto* d = ev->mutable_delta();
      while (!events_.empty() && events_.front().has_delta()) {
        const auto& next = events_.front().delta();
        d->mutable_text()->append(next.text());
        d->mutable_token_ids()->MergeFrom(next.token_ids());
        events_.pop_front();
      }
    }
    return PopResult::kEvent;
  }

  void Cancel() { cancelled_.store(true, std::memory_order_release); }
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mu_;
  std::deque<jota::v1::GenerateEvent> events_;
  bool closed_ = false;
  std::string unavailable_;
  std::function<void(bool)> listener_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace jota::inference
