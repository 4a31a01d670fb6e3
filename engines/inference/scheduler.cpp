#include "scheduler.h"

#include <algorithm>

#include "log.h"

namespace jota::inference {

using jota::v1::FinishReason;

void Counters::Fill(jota::v1::InferenceCounters* o) const {
  o->set_requests(requests);
  o->set_prompt_tokens(prompt_tokens);
  o->set_cached_tokens(cached_tokens);
  o->set_generated_tokens(generated_tokens);
  o->set_cancellations(cancellations);
  o->set_errors(errors);
  o->set_embeddings(embeddings);
  o->set_sessions_saved(sessions_saved);
  o->set_sessions_restored(sessions_restored);
  o->set_tokens_after_cancel(tokens_after_cancel);
}

namespace {
double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// How many leading tokens a slot's cache and a prompt share.
size_t CommonPrefix(const std::vector<llama_token>& cache, const std::vector<llama_token>& prompt) {
  size_t n = 0;
  while (n < cache.size() && n < prompt.size() && cache[n] == prompt[n]) ++n;
  return n;
}
}  // namespace

struct Scheduler::Slot {
  enum class State { kIdle, kPrefill, kGenerate };
  llama_seq_id id = 0;
  State state = State::kIdle;
  std::vector<llama_token> cache;  // tokens whose KV is in this sequence, positions 0..n-1
  std::string session_id;          // whose tokens these are ("" = anonymous)
  Clock::time_point last_used{};

  // The request being served.
  std::unique_ptr<GenerateTask> task;
  size_t next_prompt = 0;     // next prompt token to prefill
  llama_token pending = -1;   // sampled token to decode next
  int generated = 0;
  int batch_index = -1;       // row of this slot's logits in the current batch
  std::unique_ptr<StopMatcher> matcher;
  std::vector<int32_t> delta_ids;  // token ids not yet sent with a delta
  int delta_index = 0;             // completion index of delta_ids[0]
  int cached = 0;
  Clock::time_point t_start{}, t_first{};
};

Scheduler::Scheduler(const LoadedModel& model, SchedulerConfig config, Counters& counters)
    : model_(model), config_(std::move(config)), counters_(counters) {}

Scheduler::~Scheduler() {
  Stop();
  if (batch_.token) llama_batch_free(batch_);
  if (ctx_) llama_free(ctx_);
}

bool Scheduler::Start(std::string* error) {
  llama_context_params p = llama_context_default_params();
  p.n_ctx = static_cast<uint32_t>(config_.ctx_size) * config_.slots;
  p.n_seq_max = config_.slots;
  p.kv_unified = false;  // each slot owns exactly ctx_size cells
  p.n_batch = config_.batch_size;
  p.n_ubatch = std::min(config_.batch_size, 512);
  p.n_threads = config_.threads;
  p.n_threads_batch = config_.threads;
  p.no_perf = true;
  ctx_ = llama_init_from_model(model_.model.get(), p);
  if (ctx_ == nullptr) {
    *error = "cannot create a llama context of " + std::to_string(p.n_ctx) + " tokens (out of memory?)";
    return false;
  }
  batch_ = llama_batch_init(config_.batch_size, 0, 1);
  store_ = std::make_unique<SessionStore>(config_.state_dir, model_.fingerprint);
  for (int i = 0; i < config_.slots; ++i) {
    auto s = std::make_unique<Slot>();
    s->id = i;
    slots_.push_back(std::move(s));
  }
  thread_ = std::thread([this] { Loop(); });
  return true;
}

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

Scheduler::SubmitResult Scheduler::Submit(std::unique_ptr<GenerateTask> task) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return SubmitResult::kStopped;
  // The queue bound counts requests waiting for a slot; a free slot takes the
  // request at the next step, so allow one per idle slot on top.
  int idle = config_.slots - busy_.load();
  if (static_cast<int>(queue_.size()) >= config_.queue_max + std::max(0, idle)) return SubmitResult::kQueueFull;
  task->enqueued = Clock::now();
  queue_.push_back(std::move(task));
  cv_.notify_one();
  return SubmitResult::kQueued;
}

int Scheduler::queue_length() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(queue_.size());
}

void Scheduler::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Sleep only when nothing is running; otherwise keep decoding.
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || busy_.load() > 0; });
      if (stopping_) break;
    }
    Admit();
    Step();
  }
  // Shutdown: end every request, then keep sessions for the next start.
  std::deque<std::unique_ptr<GenerateTask>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(queue_);
  }
  // Never served: UNAVAILABLE, which a client may retry on another engine.
  for (auto& t : left) {
    t->channel->Close("the engine is shutting down; the request was not started");
    counters_.cancellations++;
  }
  for (auto& s : slots_) {
    if (s->task) Finish(*s, FinishReason::FINISH_REASON_CANCELLED, "engine shutting down");
    if (!s->session_id.empty()) Evict(*s);
  }
}

// Moves queued requests into free slots, in arrival order, skipping those
// that cannot go yet: a request whose session's slot is still busy (its
// previous request running) waits for that slot, and the requests behind it
// take the free ones meanwhile instead of waiting with it (head-of-line
// blocking: one client's second request on a busy session used to stall the
// whole queue until its first one ended). Slots belong to this thread, so
// only the queue needs the lock; session I/O happens outside it.
void Scheduler::Admit() {
  for (;;) {
    std::unique_ptr<GenerateTask> task;
    Slot* slot = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      bool any_idle = false;
      for (auto& s : slots_) any_idle = any_idle || s->state == Slot::State::kIdle;
      for (auto it = queue_.begin(); it != queue_.end();) {
        // A request cancelled while it waited never takes a slot.
        if ((*it)->channel->cancelled()) {
          (*it)->channel->Close();
          it = queue_.erase(it);
          counters_.cancellations++;
          continue;
        }
        if (any_idle && (slot = PickSlot(**it)) != nullptr) {
          task = std::move(*it);
          queue_.erase(it);
          break;
        }
        ++it;
      }
      if (!task) return;
    }
    Prepare(*slot, std::move(task));
  }
}

// The slot holding this session; else an idle slot without a session; else
// the least recently used idle session's slot (which is then saved and
// evicted).
//
// Among the slots without a session, an anonymous request takes the one whose
// cache shares the longest prefix with its prompt, provided that prefix is at
// least half of what the slot holds (a client re-sending a conversation with
// a new message reuses it; a prompt that only shares a few template tokens
// does not overwrite it). Otherwise, as for a session's first turn, an empty
// slot, else the least recently used anonymous one: sequential anonymous
// requests no longer all land on the first slot, overwriting each other.
Scheduler::Slot* Scheduler::PickSlot(const GenerateTask& task) {
  if (!task.session_id.empty()) {
    for (auto& s : slots_) {
      if (s->session_id == task.session_id) return s->state == Slot::State::kIdle ? s.get() : nullptr;
    }
  }
  Slot* reuse = nullptr;  // anonymous, with the longest reusable prefix
  size_t reuse_len = 0;
  Slot* anonymous = nullptr;  // anonymous: empty first, else least recently used
  Slot* session = nullptr;    // least recently used idle session
  for (auto& s : slots_) {
    if (s->state != Slot::State::kIdle) continue;
    if (!s->session_id.empty()) {
      if (!session || s->last_used < session->last_used) session = s.get();
      continue;
    }
    if (task.session_id.empty() && !s->cache.empty()) {
      size_t lcp = CommonPrefix(s->cache, task.prompt);
      if (lcp > reuse_len && 2 * lcp >= s->cache.size()) {
        reuse = s.get();
        reuse_len = lcp;
      }
    }
    if (!anonymous || (!anonymous->cache.empty() && (s->cache.empty() || s->last_used < anonymous->last_used)))
      anonymous = s.get();
  }
  if (reuse) return reuse;
  return anonymous ? anonymous : session;
}

void Scheduler::Evict(Slot& slot) {
  if (!slot.session_id.empty() && store_->enabled() && !slot.cache.empty()) {
    std::string err;
    if (store_->Save(ctx_, slot.id, slot.session_id, slot.cache, &err))
      counters_.sessions_saved++;
    else
      LogWarn("could not save session state: " + err, {{"slot", std::to_string(slot.id)}});
  }
  llama_memory_seq_rm(llama_get_memory(ctx_), slot.id, -1, -1);
  slot.cache.clear();
  slot.session_id.clear();
}

void Scheduler::Prepare(Slot& slot, std::unique_ptr<GenerateTask> task) {
  auto now = Clock::now();
  bool restored = false;
  if (slot.session_id != task->session_id) {
    // Another session's (or anonymous) tokens: keep a session, reuse an anonymous prefix.
    if (!slot.session_id.empty() || !task->session_id.empty()) Evict(slot);
    if (!task->session_id.empty() && store_->Exists(task->session_id)) {
      std::string err;
      if (store_->Restore(ctx_, slot.id, task->session_id, &slot.cache, &err)) {
        restored = true;
        counters_.sessions_restored++;
      } else {
        LogWarn("session state not restored, prefilling instead: " + err);
        llama_memory_seq_rm(llama_get_memory(ctx_), slot.id, -1, -1);
        slot.cache.clear();
      }
    }
  }
  // Longest common prefix; at least one prompt token is decoded for logits.
  size_t lcp = CommonPrefix(slot.cache, task->prompt);
  if (lcp > 0 && lcp == task->prompt.size()) --lcp;
  if (!llama_memory_seq_rm(llama_get_memory(ctx_), slot.id, static_cast<llama_pos>(lcp), -1)) {
    // A recurrent or hybrid memory (Mamba, RWKV, LFM2, ...) cannot drop the
    // end of a sequence: start the sequence over, as llama-server does.
    // Prefilling from lcp on top of the old state would make llama_decode
    // refuse the whole step (positions not consecutive) and fail every
    // request in it.
    llama_memory_seq_rm(llama_get_memory(ctx_), slot.id, -1, -1);
    lcp = 0;
  }
  slot.cache.resize(lcp);

  slot.session_id = task->session_id;
  slot.next_prompt = lcp;
  slot.generated = 0;
  slot.pending = -1;
  slot.matcher = std::make_unique<StopMatcher>(task->stop);
  slot.delta_ids.clear();
  slot.delta_index = 0;
  slot.cached = static_cast<int>(lcp);
  slot.t_start = now;
  slot.state = Slot::State::kPrefill;
  slot.task = std::move(task);
  busy_++;
  counters_.requests++;
  counters_.prompt_tokens += slot.task->prompt.size();
  counters_.cached_tokens += lcp;

  jota::v1::GenerateEvent ev;
  auto* st = ev.mutable_started();
  st->set_prompt_tokens(static_cast<int>(slot.task->prompt.size()));
  st->set_cached_tokens(static_cast<int>(lcp));
  st->set_queue_ms(Ms(slot.task->enqueued, now));
  st->set_slot(slot.id);
  st->set_restored_from_disk(restored);
  slot.task->channel->Push(std::move(ev));
}

void Scheduler::Step() {
  // Cancellation is checked before anything of the request is decoded again.
  for (auto& s : slots_)
    if (s->task && s->task->channel->cancelled()) Finish(*s, FinishReason::FINISH_REASON_CANCELLED);

  batch_.n_tokens = 0;
  auto add = [&](Slot& s, llama_token tok, bool logits) {
    int i = batch_.n_tokens++;
    batch_.token[i] = tok;
    batch_.pos[i] = static_cast<llama_pos>(s.cache.size());
    batch_.n_seq_id[i] = 1;
    batch_.seq_id[i][0] = s.id;
    batch_.logits[i] = logits;
    s.cache.push_back(tok);
    if (logits) s.batch_index = i;
  };
  // Running streams first: each gets its next token into this step.
  for (auto& s : slots_) {
    s->batch_index = -1;
    if (s->state == Slot::State::kGenerate) add(*s, s->pending, true);
  }
  // Then prompts, in chunks, into the room left. The first claim on it goes
  // round the slots step by step: walked from slot 0 every time, one long
  // prompt in a low slot took every step's room until it was done, and a
  // short prompt that arrived meanwhile in a higher slot waited for all of it.
  for (size_t k = 0; k < slots_.size(); ++k) {
    auto& s = slots_[(prefill_first_ + k) % slots_.size()];
    if (s->state != Slot::State::kPrefill) continue;
    const auto& prompt = s->task->prompt;
    while (s->next_prompt < prompt.size() && batch_.n_tokens < config_.batch_size) {
      bool last = s->next_prompt + 1 == prompt.size();
      add(*s, prompt[s->next_prompt++], last);
    }
  }
  prefill_first_ = (prefill_first_ + 1) % slots_.size();
  if (batch_.n_tokens == 0) return;

  int rc = llama_decode(ctx_, batch_);
  if (rc != 0) {
    // The batch is lost for every request in it; their caches no longer match.
    std::string why = "llama_decode failed (" + std::to_string(rc) + ")";
    LogError(why);
    for (auto& s : slots_) {
      if (!s->task) continue;
      llama_memory_seq_rm(llama_get_memory(ctx_), s->id, -1, -1);
      s->cache.clear();
      s->session_id.clear();
      Finish(*s, FinishReason::FINISH_REASON_ERROR, why);
    }
    return;
  }
  for (auto& s : slots_) {
    if (!s->task || s->batch_index < 0) continue;
    if (s->task->channel->cancelled()) {
      // Cancelled while this token was being decoded: the one allowed token.
      counters_.tokens_after_cancel++;
      Finish(*s, FinishReason::FINISH_REASON_CANCELLED);
      continue;
    }
    llama_token tok;
    try {
      tok = s->task->sampler->Sample(ctx_, s->batch_index);
    } catch (const std::exception& e) {
      // An exception escaping this thread would end the process (and every
      // other stream): it ends only this request.
      Finish(*s, FinishReason::FINISH_REASON_ERROR, std::string("sampling failed: ") + e.what());
      continue;
    }
    if (s->state == Slot::State::kPrefill) {
      s->state = Slot::State::kGenerate;
      s->t_first = Clock::now();
    }
    HandleToken(*s, tok);
  }
}

void Scheduler::HandleToken(Slot& slot, llama_token tok) {
  const llama_vocab* vocab = model_.vocab();
  slot.generated++;
  counters_.generated_tokens++;
  if (llama_vocab_is_eog(vocab, tok)) {
    Finish(slot, FinishReason::FINISH_REASON_STOP);
    return;
  }
  slot.delta_ids.push_back(tok);
  auto r = slot.matcher->Push(TokenPiece(vocab, tok));
  if (r.stopped) {
    EmitDelta(slot, r.emit);
    Finish(slot, FinishReason::FINISH_REASON_STOP, "", r.stop);
    return;
  }
  if (!r.emit.empty()) EmitDelta(slot, r.emit);
  bool max_reached = slot.task->max_tokens > 0 && slot.generated >= slot.task->max_tokens;
  bool ctx_full = static_cast<int>(slot.cache.size()) + 1 >= config_.ctx_size;
  if (max_reached || ctx_full) {
    Finish(slot, FinishReason::FINISH_REASON_LENGTH);
    return;
  }
  slot.pending = tok;
}

void Scheduler::EmitDelta(Slot& slot, const std::string& text) {
  if (text.empty() && slot.delta_ids.empty()) return;
  jota::v1::GenerateEvent ev;
  auto* d = ev.mutable_delta();
  d->set_text(text);
  for (int32_t id : slot.delta_ids) d->add_token_ids(id);
  d->set_index(slot.delta_index);
  slot.delta_index += static_cast<int>(slot.delta_ids.size());
  slot.delta_ids.clear();
  slot.task->channel->Push(std::move(ev));
}

void Scheduler::Finish(Slot& slot, FinishReason reason, const std::string& error, const std::string& stop) {
  auto now = Clock::now();
  GenerateTask& task = *slot.task;
  if (reason != FinishReason::FINISH_REASON_CANCELLED) {
    // Held-back text (a stop-string prefix that never completed, an
    // incomplete character) belongs to the output.
    std::string rest = slot.matcher->Flush();
    if (!rest.empty() || !slot.delta_ids.empty()) EmitDelta(slot, rest);
  }
  if (reason == FinishReason::FINISH_REASON_CANCELLED) counters_.cancellations++;
  if (reason == FinishReason::FINISH_REASON_ERROR) counters_.errors++;

  jota::v1::GenerateEvent ev;
  auto* done = ev.mutable_done();
  done->set_finish_reason(reason);
  done->set_error(error);
  done->set_stop_string(stop);
  auto* usage = done->mutable_usage();
  int prompt = static_cast<int>(task.prompt.size());
  usage->set_prompt_tokens(prompt);
  usage->set_completion_tokens(slot.generated);
  usage->set_cached_tokens(slot.cached);
  auto* t = done->mutable_timings();
  bool first = slot.t_first != Clock::time_point{};
  t->set_queue_ms(Ms(task.enqueued, slot.t_start));
  t->set_prefill_ms(first ? Ms(slot.t_start, slot.t_first) : Ms(slot.t_start, now));
  t->set_decode_ms(first ? Ms(slot.t_first, now) : 0);
  if (t->prefill_ms() > 0) t->set_prefill_tokens_per_s((prompt - slot.cached) * 1000.0 / t->prefill_ms());
  // The first token comes out of prefill; decode produced the others.
  if (t->decode_ms() > 0 && slot.generated > 1) t->set_decode_tokens_per_s((slot.generated - 1) * 1000.0 / t->decode_ms());

  // The slot is free before `done` goes out: a client that saw `done` and
  // asks Info must not still find its slot busy (it did, ~1 call in 4).
  // A request cut off mid-prompt leaves a prefix of its prompt in the cache: still valid.
  std::unique_ptr<GenerateTask> finished = std::move(slot.task);
  slot.matcher.reset();
  slot.state = Slot::State::kIdle;
  slot.t_first = Clock::time_point{};
  slot.last_used = now;
  busy_--;
  finished->channel->Push(std::move(ev));
  finished->channel->Close();
}

}  // namespace jota::inference
