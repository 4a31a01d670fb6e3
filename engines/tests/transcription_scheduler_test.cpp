// Admission through the decoder pool: N at once, a bounded FIFO queue,
// RESOURCE_EXHAUSTED beyond it, and waiters that give up or are shut out.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "scheduler.h"

using namespace jota::transcription;

namespace {

class NullDecoder : public Decoder {
 public:
  explicit NullDecoder(std::atomic<int>* live) : live_(live) { ++*live_; }
  ~NullDecoder() override { --*live_; }
  DecodeResult Decode(const std::vector<float>&, const DecodeOptions&, const std::function<bool()>&) override { return {}; }

 private:
  std::atomic<int>* live_;
};

struct Pool {
  std::atomic<int> live{0};
  std::atomic<bool> fail{false};
  DecoderPool pool;
  Pool(int slots, int queue)
      : pool(slots, queue, [this](std::string* error) -> std::unique_ptr<Decoder> {
          if (fail) {
            *error = "no memory for a state";
            return nullptr;
          }
          return std::make_unique<NullDecoder>(&live);
        }) {}

  grpc::Status Acquire(std::unique_ptr<DecoderPool::Lease>* lease, const std::atomic<bool>* cancel = nullptr) {
    return pool.Acquire([cancel] { return cancel != nullptr && cancel->load(); }, lease);
  }
  // Acquires on another thread (dropping the lease at once); the future says how it went.
  std::future<grpc::Status> Waiter(std::atomic<bool>* cancel = nullptr) {
    return std::async(std::launch::async, [this, cancel] {
      std::unique_ptr<DecoderPool::Lease> lease;
      return Acquire(&lease, cancel);
    });
  }
  void WaitUntilWaiting(int n) {
    while (pool.waiting() != n) std::this_thread::yield();
  }
};

}  // namespace

TEST(TranscriptionScheduler, SlotsThenQueueThenResourceExhausted) {
  Pool p(2, 1);
  std::unique_ptr<DecoderPool::Lease> a, b;
  ASSERT_TRUE(p.Acquire(&a).ok());
  ASSERT_TRUE(p.Acquire(&b).ok());
  EXPECT_EQ(p.pool.active(), 2);
  EXPECT_EQ(p.live, 2);  // a state per lease

  auto queued = p.Waiter();
  p.WaitUntilWaiting(1);
  std::unique_ptr<DecoderPool::Lease> c;
  grpc::Status st = p.Acquire(&c);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(st.error_message(), "all 2 decoders are busy and 1 requests are already waiting (--streams, --queue-max)");

  a.reset();  // frees a slot (and its state) for the waiter
  EXPECT_TRUE(queued.get().ok());
  EXPECT_EQ(p.pool.waiting(), 0);
  b.reset();
  EXPECT_EQ(p.pool.active(), 0);
  EXPECT_EQ(p.live, 0);
}

TEST(TranscriptionScheduler, NoQueueMeansRefuseAtOnce) {
  Pool p(1, 0);
  std::unique_ptr<DecoderPool::Lease> a, b;
  ASSERT_TRUE(p.Acquire(&a).ok());
  EXPECT_EQ(p.Acquire(&b).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST(TranscriptionScheduler, WaitersAreServedFirstComeFirstServed) {
  Pool p(1, 3);
  std::unique_ptr<DecoderPool::Lease> holder;
  ASSERT_TRUE(p.Acquire(&holder).ok());
  std::vector<int> order;
  std::mutex mu;
  std::vector<std::thread> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.emplace_back([&, i] {
      std::unique_ptr<DecoderPool::Lease> lease;
      ASSERT_TRUE(p.Acquire(&lease).ok());
      std::lock_guard<std::mutex> lock(mu);
      order.push_back(i);
    });
    p.WaitUntilWaiting(i + 1);  // queued in index order
  }
  holder.reset();
  for (auto& t : waiters) t.join();
  EXPECT_EQ(order, std::vector<int>({0, 1, 2}));
}

TEST(TranscriptionScheduler, AWaiterThatGivesUpLeavesTheQueue) {
  Pool p(1, 2);
  std::unique_ptr<DecoderPool::Lease> holder;
  ASSERT_TRUE(p.Acquire(&holder).ok());
  std::atomic<bool> cancel{false};
  auto first = p.Waiter(&cancel);
  p.WaitUntilWaiting(1);
  auto second = p.Waiter();
  p.WaitUntilWaiting(2);
  cancel = true;
  const grpc::Status st = first.get();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(p.pool.waiting(), 1);
  holder.reset();
  EXPECT_TRUE(second.get().ok());  // not stuck behind the one that left
}

TEST(TranscriptionScheduler, ShutdownTurnsWaitersAway) {
  Pool p(1, 2);
  std::unique_ptr<DecoderPool::Lease> holder;
  ASSERT_TRUE(p.Acquire(&holder).ok());
  auto waiter = p.Waiter();
  p.WaitUntilWaiting(1);
  p.pool.Shutdown();
  EXPECT_EQ(waiter.get().error_code(), grpc::StatusCode::UNAVAILABLE);
  std::unique_ptr<DecoderPool::Lease> late;
  EXPECT_EQ(p.Acquire(&late).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(TranscriptionScheduler, AStateThatCannotBeMadeFreesItsSlot) {
  Pool p(1, 0);
  p.fail = true;
  std::unique_ptr<DecoderPool::Lease> lease;
  const grpc::Status st = p.Acquire(&lease);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(st.error_message(), "no memory for a state");
  EXPECT_EQ(p.pool.active(), 0);
  p.fail = false;
  EXPECT_TRUE(p.Acquire(&lease).ok());
}
