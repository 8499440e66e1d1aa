// offload/eviction_policy.cpp — LRU, LFU and frequency-with-decay (see eviction_policy.hpp).
#include "offload/eviction_policy.hpp"

#include <cmath>
#include <unordered_map>
#include <vector>

#include "common/error.hpp"

namespace moetier::offload {
namespace {

// Common bookkeeping: per slot, the resident expert and its last use. Subclasses add a score where a
// lower score is evicted first; ties fall back to LRU, then the lowest slot.
class SlotPolicy : public EvictionPolicy {
 public:
  void reset(size_t n_slots) override {
    last_.assign(n_slots, 0);
    ids_.assign(n_slots, ExpertId{});
  }
  void on_hit(ExpertId id, uint32_t slot, uint64_t tick) override {
    last_[slot] = tick;
    touch(id, slot, tick);
  }
  void on_insert(ExpertId id, uint32_t slot, uint64_t tick, bool demand) override {
    last_[slot] = tick;
    ids_[slot] = id;
    if (demand) touch(id, slot, tick);
  }
  void on_evict(ExpertId, uint32_t) override {}
  uint32_t choose_victim(std::span<const uint8_t> evictable, uint64_t tick) override {
    uint32_t best = kNoSlot;
    double best_score = 0;
    for (uint32_t s = 0; s < evictable.size(); ++s) {
      if (!evictable[s]) continue;
      const double sc = score(ids_[s], tick);
      if (best == kNoSlot || sc < best_score || (sc == best_score && last_[s] < last_[best])) {
        best = s;
        best_score = sc;
      }
    }
    return best;
  }

 protected:
  virtual void touch(ExpertId id, uint32_t slot, uint64_t tick) = 0;
  virtual double score(ExpertId id, uint64_t tick) const = 0;

  std::vector<uint64_t> last_;
  std::vector<ExpertId> ids_;
};

class Lru final : public SlotPolicy {
 public:
  std::string_view name() const override { return "lru"; }

 protected:
  void touch(ExpertId, uint32_t, uint64_t) override {}
  double score(ExpertId, uint64_t) const override { return 0; }  // all tie: pure LRU
};

class Lfu final : public SlotPolicy {
 public:
  std::string_view name() const override { return "lfu"; }
  void reset(size_t n_slots) override {
    SlotPolicy::reset(n_slots);
    count_.clear();
  }

 protected:
  void touch(ExpertId id, uint32_t, uint64_t) override { ++count_[id]; }
  double score(ExpertId id, uint64_t) const override {
    const auto it = count_.find(id);
    return it == count_.end() ? 0.0 : static_cast<double>(it->second);
  }

 private:
  std::unordered_map<ExpertId, uint64_t, ExpertIdHash> count_;
};

class FreqDecay final : public SlotPolicy {
 public:
  explicit FreqDecay(double half_life) : half_life_(half_life) {
    if (!(half_life > 0)) fail("freq_decay policy: half life {} ticks must be > 0", half_life);
  }
  std::string_view name() const override { return "freq_decay"; }
  void reset(size_t n_slots) override {
    SlotPolicy::reset(n_slots);
    state_.clear();
  }

 protected:
  void touch(ExpertId id, uint32_t, uint64_t tick) override {
    State& s = state_[id];
    s.score = decayed(s, tick) + 1.0;
    s.tick = tick;
  }
  double score(ExpertId id, uint64_t tick) const override {
    const auto it = state_.find(id);
    return it == state_.end() ? 0.0 : decayed(it->second, tick);
  }

 private:
  struct State {
    double score = 0;
    uint64_t tick = 0;
  };
  double decayed(const State& s, uint64_t tick) const {
    return s.score * std::exp2(-static_cast<double>(tick - s.tick) / half_life_);
  }
  double half_life_;
  std::unordered_map<ExpertId, State, ExpertIdHash> state_;
};

}  // namespace

std::string_view policy_name(PolicyKind kind) {
  switch (kind) {
    case PolicyKind::Lru: return "lru";
    case PolicyKind::Lfu: return "lfu";
    case PolicyKind::FreqDecay: return "freq_decay";
  }
  return "?";
}

PolicyKind parse_policy(std::string_view name) {
  for (PolicyKind k : {PolicyKind::Lru, PolicyKind::Lfu, PolicyKind::FreqDecay})
    if (name == policy_name(k)) return k;
  fail("unknown eviction policy \"{}\" (expected lru, lfu or freq_decay)", name);
}

std::unique_ptr<EvictionPolicy> make_policy(PolicyKind kind, PolicyParams params) {
  switch (kind) {
    case PolicyKind::Lru: return std::make_unique<Lru>();
    case PolicyKind::Lfu: return std::make_unique<Lfu>();
    case PolicyKind::FreqDecay: return std::make_unique<FreqDecay>(params.half_life_ticks);
  }
  fail("make_policy: invalid policy kind {}", static_cast<int>(kind));
}

}  // namespace moetier::offload
