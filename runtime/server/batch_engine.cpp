#include "runtime/server/batch_engine.hpp"

#include <algorithm>
#include <chrono>
#include <exception>

namespace moetier::server {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

bool RequestHandle::next(GenEvent& out, int timeout_ms) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return !events_.empty(); })) return false;
  out = std::move(events_.front());
  events_.pop_front();
  return true;
}

void RequestHandle::push(GenEvent e) {
  {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

size_t stop_prefix_hold(std::string_view text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& s : stops)
    for (size_t len = std::min(text.size(), s.size() - 1); len > hold; --len)
      if (text.substr(text.size() - len) == std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
  return hold;
}

struct BatchEngine::Slot {
  models::KvCache cache;
  std::shared_ptr<RequestHandle> h;  // null: free
  GenRequest r;
  std::unique_ptr<sampling::Sampler> sampler;
  std::unique_ptr<tokenizer::StreamingDetokenizer> detok;
  size_t prefilled = 0;
  bool decoding = false;
  int32_t next_token = 0;
  int32_t n_gen = 0;
  std::string text;  // generated text so far; [0, sent) went out as events
  size_t sent = 0;
  std::vector<float> logits;
};

BatchEngine::BatchEngine(models::Model& model, const tokenizer::Tokenizer& tok, const EngineOptions& o)
    : model_(model), tok_(tok), o_(o) {
  for (int i = 0; i < o_.n_parallel; ++i) {
    auto s = std::make_unique<Slot>();
    s->cache = model_.new_cache(o_.n_ctx_slot);
    slots_.push_back(std::move(s));
  }
  thread_ = std::thread([this] { loop(); });
}

BatchEngine::~BatchEngine() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  GenEvent e{GenEvent::Kind::Error, "the server is shutting down", "", 0, 0};
  for (auto& s : slots_)
    if (s->h) s->h->push(e);
  for (auto& q : queue_) q.second->push(e);
}

std::shared_ptr<RequestHandle> BatchEngine::submit(GenRequest r) {
  auto h = std::make_shared<RequestHandle>();
  {
    std::lock_guard lock(mu_);
    // A request in the queue while a slot is free goes into that slot at the engine's next step: the
    // queue holds the free slots' requests and max_queue waiting ones (--queue 0 refused every request).
    if (static_cast<int>(queue_.size()) >= o_.max_queue + (o_.n_parallel - stats_.active)) return nullptr;
    queue_.emplace_back(std::move(r), h);
    stats_.queued = static_cast<int>(queue_.size());
  }
  cv_.notify_all();
  return h;
}

void BatchEngine::cancel_all() {
  {
    std::lock_guard lock(mu_);
    cancel_all_ = true;
    for (auto& q : queue_) q.second->cancel();
  }
  cv_.notify_all();
}

EngineStats BatchEngine::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void BatchEngine::admit() {
  std::lock_guard lock(mu_);
  for (auto& s : slots_) {
    if (queue_.empty()) break;
    if (s->h) continue;
    auto [r, h] = std::move(queue_.front());
    queue_.pop_front();
    s->r = std::move(r);
    s->h = std::move(h);
    s->sampler = std::make_unique<sampling::Sampler>(s->r.sampling);
    for (int32_t t : s->r.prompt) s->sampler->accept(t);
    s->detok = std::make_unique<tokenizer::StreamingDetokenizer>(tok_, false);
    s->prefilled = 0;
    s->decoding = false;
    s->n_gen = 0;
    s->text.clear();
    s->sent = 0;
    s->cache.n_past = 0;
    ++stats_.requests;
  }
  stats_.queued = static_cast<int>(queue_.size());
  stats_.active = static_cast<int>(std::count_if(slots_.begin(), slots_.end(), [](auto& s) { return s->h != nullptr; }));
}

void BatchEngine::release(Slot& s) {
  s.h.reset();
  s.decoding = false;
  s.cache.n_past = 0;
  std::lock_guard lock(mu_);
  --stats_.active;
}

void BatchEngine::finish(Slot& s, const char* reason) {
  GenEvent done{GenEvent::Kind::Done, "", reason, static_cast<int32_t>(s.r.prompt.size()), s.n_gen};
  s.h->push(std::move(done));
  release(s);
}

bool BatchEngine::take_token(Slot& s, int32_t tok) {
  s.sampler->accept(tok);
  ++s.n_gen;
  {
    std::lock_guard lock(mu_);
    ++stats_.generated_tokens;
  }
  const auto emit_until = [&](size_t end) {
    if (end > s.sent) s.h->push(GenEvent{GenEvent::Kind::Text, s.text.substr(s.sent, end - s.sent), "", 0, 0});
    s.sent = std::max(s.sent, end);
  };
  if (s.r.stop_at_eog && tok_.is_eog(tok)) {
    s.text += s.detok->finish();
    emit_until(s.text.size());
    finish(s, "stop");
    return false;
  }
  s.text += s.detok->push(tok);
  size_t stop_at = std::string::npos;
  for (const std::string& st : s.r.stop) stop_at = std::min(stop_at, s.text.find(st, s.sent));
  if (stop_at != std::string::npos) {
    emit_until(stop_at);
    finish(s, "stop");
    return false;
  }
  const bool last = (s.r.max_tokens >= 0 && s.n_gen >= s.r.max_tokens) || s.cache.n_past >= s.cache.n_ctx;
  if (last) {
    s.text += s.detok->finish();
    emit_until(s.text.size());
    finish(s, "length");
    return false;
  }
  emit_until(s.text.size() - stop_prefix_hold(std::string_view(s.text).substr(s.sent), s.r.stop));
  s.next_token = tok;
  return true;
}

void BatchEngine::prefill_one(Slot& s) {
  const size_t n = std::min<size_t>(static_cast<size_t>(o_.n_batch), s.r.prompt.size() - s.prefilled);
  const auto t0 = std::chrono::steady_clock::now();
  model_.set_batch_invariant(false);  // a prompt chunk runs alone: llama.cpp's batch orders, as `run`
  model_.forward(std::span<const int32_t>(s.r.prompt).subspan(s.prefilled, n), s.cache, s.logits);
  s.prefilled += n;
  {
    std::lock_guard lock(mu_);
    stats_.prompt_tokens += n;
    stats_.prompt_seconds += seconds_since(t0);
  }
  if (s.prefilled < s.r.prompt.size()) return;
  if (s.r.on_logits) s.r.on_logits(s.logits);
  s.decoding = take_token(s, s.sampler->sample(s.logits));
}

void BatchEngine::decode_step(std::vector<Slot*>& active) {
  std::vector<models::Model::SeqChunk> chunks;
  for (Slot* s : active) chunks.push_back({std::span<const int32_t>(&s->next_token, 1), &s->cache, &s->logits});
  const auto t0 = std::chrono::steady_clock::now();
  model_.set_batch_invariant(true);
  model_.forward_batch(chunks);
  {
    std::lock_guard lock(mu_);
    ++stats_.decode_steps;
    stats_.decode_seconds += seconds_since(t0);
  }
  for (Slot* s : active) {
    if (s->r.on_logits) s->r.on_logits(s->logits);
    s->decoding = take_token(*s, s->sampler->sample(s->logits));
  }
}

void BatchEngine::loop() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || cancel_all_ || !queue_.empty() ||
               std::any_of(slots_.begin(), slots_.end(), [](auto& s) { return s->h != nullptr; });
      });
      if (stopping_) return;
    }
    {
      std::lock_guard lock(mu_);
      if (cancel_all_) {
        for (auto& s : slots_)
          if (s->h) s->h->cancel();
        cancel_all_ = false;
      }
    }
    admit();
    // A cancelled request (client gone, or cancel_all) ends with an Error event, so whoever still waits
    // on it finishes.
    for (auto& s : slots_)
      if (s->h && s->h->cancelled()) {
        s->h->push(GenEvent{GenEvent::Kind::Error, "the request was cancelled", "", 0, 0});
        release(*s);
      }
    // Whatever goes wrong in a step (non-finite logits, a failed expert read) ends the requests of that
    // step with an Error event; the server keeps serving the others.
    const auto fail_slots = [&](const std::vector<Slot*>& which, const std::exception& e) {
      for (Slot* s : which) {
        s->h->push(GenEvent{GenEvent::Kind::Error, e.what(), "", 0, 0});
        release(*s);
      }
    };
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = *slots_[(next_prefill_ + i) % slots_.size()];
      if (!s.h || s.decoding) continue;
      next_prefill_ = (next_prefill_ + i + 1) % slots_.size();
      try {
        prefill_one(s);
      } catch (const std::exception& e) {
        fail_slots({&s}, e);
      }
      break;
    }
    std::vector<Slot*> active;
    for (auto& s : slots_)
      if (s->h && s->decoding) active.push_back(s.get());
    if (active.empty()) continue;
    try {
      decode_step(active);
    } catch (const std::exception& e) {
      std::vector<Slot*> still;
      for (Slot* s : active)
        if (s->h) still.push_back(s);
      fail_slots(still, e);
    }
  }
}

}  // namespace moetier::server
