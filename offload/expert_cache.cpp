// offload/expert_cache.cpp — ExpertCache and ExpertLease (see expert_cache.hpp).
#include "offload/expert_cache.hpp"

#include <chrono>
#include <cstdio>

#include "common/error.hpp"
#include "common/trace_events.hpp"
#include "offload/slot_layout.hpp"

namespace moetier::offload {
namespace {

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// Bytes the reader reads for `ranges` (aligned extents), without allocating.
uint64_t read_bytes(std::span<const ByteRange> ranges) {
  uint64_t n = 0;
  for (const ByteRange& r : ranges)
    if (r.length > 0) n += align_up(r.offset + r.length) - align_down(r.offset);
  return n;
}

}  // namespace

LayerCacheStats& LayerCacheStats::operator+=(const LayerCacheStats& o) {
  hits += o.hits;
  inflight_hits += o.inflight_hits;
  misses += o.misses;
  prefetches += o.prefetches;
  evictions += o.evictions;
  bytes_read += o.bytes_read;
  stall_ns += o.stall_ns;
  return *this;
}

// ---- ExpertLease ------------------------------------------------------------------------------------

ExpertLease& ExpertLease::operator=(ExpertLease&& o) noexcept {
  if (this != &o) {
    reset();
    cache_ = o.cache_;
    slot_ = o.slot_;
    id_ = o.id_;
    o.cache_ = nullptr;
  }
  return *this;
}

void ExpertLease::reset() {
  if (cache_ != nullptr) cache_->release(slot_);
  cache_ = nullptr;
}

size_t ExpertLease::n_ranges() const { return cache_->catalog_.ranges(cache_->slots_[slot_].expert).size(); }

std::span<const std::byte> ExpertLease::range(size_t i) const { return cache_->range_bytes(slot_, i); }

// ---- ExpertCache ------------------------------------------------------------------------------------

ExpertCache::ExpertCache(std::vector<std::string> files, ExpertCatalog catalog, CacheOptions opts)
    : catalog_(std::move(catalog)), opts_(std::move(opts)) {
  if (catalog_.size() == 0) fail("expert cache: the catalog has no experts");
  const uint64_t need = catalog_.max_slot_bytes();
  slot_bytes_ = opts_.slot_bytes != 0 ? align_up(opts_.slot_bytes) : need;
  if (slot_bytes_ < need)
    fail("expert cache: slot size {} bytes is smaller than the largest expert needs ({} bytes with alignment)",
         slot_bytes_, need);
  const uint64_t n_slots = opts_.budget_bytes / slot_bytes_;
  if (n_slots == 0)
    fail("expert cache: budget {} bytes holds no slot of {} bytes", opts_.budget_bytes, slot_bytes_);
  if (n_slots > (1u << 20)) fail("expert cache: {} slots is too many (max {})", n_slots, 1u << 20);

  pinned_.assign(catalog_.size(), 0);
  protected_.assign(catalog_.size(), 0);
  size_t n_pinned = 0;
  for (ExpertId id : opts_.pinned) {
    const int64_t e = catalog_.find(id);
    if (e < 0) fail("expert cache: pinned expert ({}) is not in the catalog", to_string(id));
    n_pinned += pinned_[e] == 0;
    pinned_[e] = 1;
  }
  if (n_pinned >= n_slots)
    fail("expert cache: {} pinned experts leave no evictable slot ({} slots of {} bytes in a budget of {})",
         n_pinned, n_slots, slot_bytes_, opts_.budget_bytes);

  std::vector<std::span<std::byte>> spans;
  buffers_.reserve(n_slots);
  for (uint64_t i = 0; i < n_slots; ++i) {
    buffers_.emplace_back(slot_bytes_, kIoAlignment);
    spans.push_back(buffers_.back().span());
  }
  slots_.resize(n_slots);
  slot_of_.assign(catalog_.size(), kNone);
  evictable_.assign(n_slots, 0);
  for (uint64_t i = n_slots; i-- > 0;) free_.push_back(static_cast<uint32_t>(i));
  completions_.reserve(n_slots);
  stats_.resize(static_cast<size_t>(catalog_.n_layers()));
  policy_ = make_policy(opts_.policy, opts_.policy_params);
  policy_->reset(n_slots);
  reader_ = std::make_unique<UringReader>(std::move(files), std::move(spans), opts_.reader);
}

ExpertCache::~ExpertCache() {
  for (const Slot& s : slots_)
    if (s.leases != 0) {
      std::fprintf(stderr, "error: expert cache destroyed while leases are held (bug in the caller)\n");
      break;
    }
}

void ExpertCache::on_completion(const Completion& c) {
  Slot& s = slots_[c.slot];
  if (s.state != State::Reading) return;
  if (trace::enabled()) {  // the read on the I/O track: from its submission to its completion seen here
    trace::Event e;  // (a read submitted before tracing began: an instant at its completion)
    e.name = "read";
    e.cat = "io";
    e.track = trace::kIoTrack;
    const int64_t now = trace::now_ns();
    e.begin_ns = s.read_start_ns != 0 ? s.read_start_ns : now;
    e.dur_ns = now - e.begin_ns;
    e.arg("layer", c.expert.layer).arg("expert", c.expert.expert).arg("bytes", c.ok() ? static_cast<int64_t>(s.read_bytes) : 0);
    e.arg("slot", c.slot).arg("failed", c.ok() ? 0 : 1).str("kind", s.demand ? "demand" : "prefetch");
    trace::record(e);
  }
  if (c.ok()) {
    s.state = State::Ready;
    stats_[static_cast<size_t>(c.expert.layer)].bytes_read += s.read_bytes;
  } else {
    s.state = State::Failed;
    s.error = c.error;
  }
}

void ExpertCache::poll() {
  completions_.clear();
  reader_->poll(completions_, false);
  for (const Completion& c : completions_) on_completion(c);
}

void ExpertCache::free_slot(uint32_t slot) {
  Slot& s = slots_[slot];
  policy_->on_evict(catalog_.id(s.expert), slot);
  slot_of_[s.expert] = kNone;
  s.state = State::Empty;
  s.error.clear();
  free_.push_back(slot);
}

uint32_t ExpertCache::take_slot(bool may_block) {
  for (;;) {
    if (!free_.empty()) {
      const uint32_t s = free_.back();
      free_.pop_back();
      return s;
    }
    bool any = false, any_protected = false;
    for (uint32_t i = 0; i < slots_.size(); ++i) {
      const Slot& s = slots_[i];
      if (s.state == State::Failed && s.leases == 0) {  // a failed read holds nothing worth keeping
        free_slot(i);
        any = true;
        break;
      }
      const bool unused = s.state == State::Ready && s.leases == 0 && pinned_[s.expert] == 0;
      evictable_[i] = unused && protected_[s.expert] == 0;
      any_protected = any_protected || (unused && protected_[s.expert] != 0);
    }
    if (any) continue;
    uint32_t v = policy_->choose_victim(evictable_, tick_);
    if (v == kNoSlot && may_block && any_protected && reader_->n_active() == 0) {
      // Only experts about to be used are left and nothing is being read: evicting one of them costs a
      // re-read; failing would break a layer whose experts outnumber the slots.
      for (uint32_t i = 0; i < slots_.size(); ++i) {
        const Slot& s = slots_[i];
        evictable_[i] = s.state == State::Ready && s.leases == 0 && pinned_[s.expert] == 0;
      }
      v = policy_->choose_victim(evictable_, tick_);
    }
    if (v != kNoSlot) {
      ++stats_[static_cast<size_t>(catalog_.id(slots_[v].expert).layer)].evictions;
      free_slot(v);
      free_.pop_back();
      return v;
    }
    if (!may_block) return kNone;
    if (reader_->n_active() == 0) {
      size_t n_leased = 0, n_pinned = 0;
      for (const Slot& s : slots_) {
        n_leased += s.leases > 0;
        n_pinned += s.leases == 0 && pinned_[s.expert] != 0;
      }
      fail("expert cache: no slot can be freed: {} of {} slots are leased and {} hold pinned experts", n_leased,
           slots_.size(), n_pinned);
    }
    completions_.clear();
    reader_->poll(completions_, true);
    for (const Completion& c : completions_) on_completion(c);
  }
}

void ExpertCache::start_read(uint32_t slot, uint32_t expert, bool demand) {
  const ExpertId id = catalog_.id(expert);
  try {
    reader_->submit(id, catalog_.ranges(expert), slot);
  } catch (...) {
    free_.push_back(slot);
    throw;
  }
  Slot& s = slots_[slot];
  s.state = State::Reading;
  s.expert = expert;
  s.read_bytes = read_bytes(catalog_.ranges(expert));
  s.read_start_ns = trace::enabled() ? trace::now_ns() : 0;
  s.demand = demand;
  s.error.clear();
  slot_of_[expert] = slot;
  policy_->on_insert(id, slot, tick_, demand);
}

ExpertLease ExpertCache::acquire(ExpertId id) {
  const uint32_t e = catalog_.index(id);
  ++tick_;
  LayerCacheStats& st = stats_[static_cast<size_t>(id.layer)];
  poll();
  uint32_t s = slot_of_[e];
  if (s != kNone && slots_[s].state == State::Failed && slots_[s].leases == 0) {
    const std::string err = std::move(slots_[s].error);
    free_slot(s);
    throw Error(err);
  }
  if (s != kNone && slots_[s].state == State::Ready) {
    ++st.hits;
    policy_->on_hit(id, s, tick_);
    ++slots_[s].leases;
    return ExpertLease(this, s, id);
  }
  const uint64_t t0 = now_ns();
  if (s == kNone) {
    ++st.misses;
    s = take_slot(true);
    start_read(s, e, true);
  } else {
    ++st.inflight_hits;
    policy_->on_hit(id, s, tick_);
  }
  ++slots_[s].leases;  // held while waiting, so nothing evicts it meanwhile
  if (slots_[s].state == State::Reading) on_completion(reader_->wait(id));
  const uint64_t t1 = now_ns();
  st.stall_ns += t1 - t0;
  if (trace::enabled()) {  // the stall on the waiting thread's track
    trace::Event e;
    e.name = "stall";
    e.cat = "io";
    e.begin_ns = static_cast<int64_t>(t0);
    e.dur_ns = static_cast<int64_t>(t1 - t0);
    e.arg("layer", id.layer).arg("expert", id.expert);
    trace::record(e);
  }
  if (slots_[s].state != State::Ready) {
    --slots_[s].leases;
    const std::string err = slots_[s].error;
    if (slots_[s].leases == 0) free_slot(s);
    throw Error(err);
  }
  return ExpertLease(this, s, id);
}

bool ExpertCache::prefetch(ExpertId id, bool needed_now) {
  const uint32_t e = catalog_.index(id);
  poll();
  uint32_t s = slot_of_[e];
  if (s != kNone) {
    if (slots_[s].state != State::Failed || slots_[s].leases != 0) return true;
    free_slot(s);  // retry a failed read
  }
  s = take_slot(false);
  if (s == kNone) return false;
  start_read(s, e, false);
  slots_[s].demand = needed_now;  // the trace's label only; the policy saw a prefetch
  ++stats_[static_cast<size_t>(id.layer)].prefetches;
  return true;
}

void ExpertCache::release(uint32_t slot) { --slots_[slot].leases; }

bool ExpertCache::ready(ExpertId id) const {
  const int64_t e = catalog_.find(id);
  if (e < 0) return false;
  const uint32_t s = slot_of_[static_cast<size_t>(e)];
  return s != kNone && slots_[s].state == State::Ready;
}

bool ExpertCache::in_flight(ExpertId id) const {
  const int64_t e = catalog_.find(id);
  if (e < 0) return false;
  const uint32_t s = slot_of_[static_cast<size_t>(e)];
  return s != kNone && slots_[s].state == State::Reading;
}

LayerCacheStats ExpertCache::total_stats() const {
  LayerCacheStats t;
  for (const LayerCacheStats& s : stats_) t += s;
  return t;
}

void ExpertCache::reset_stats() {
  for (LayerCacheStats& s : stats_) s = LayerCacheStats{};
}

}  // namespace moetier::offload
