#include "scheduler/dynamic_slots.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace moetier::sched {

DynamicSlots::DynamicSlots(DeviceBackend& device, uint64_t budget_bytes, const DynamicSlotsOptions& opts)
    : device_(device), budget_bytes_(budget_bytes), opts_(opts) {
  if (opts.n_layers < 1 || opts.n_experts < 1)
    fail("dynamic slots: need at least one layer and one expert (n_layers {}, n_experts {})", opts.n_layers,
         opts.n_experts);
  if (!(opts.decay >= 0.0 && opts.decay < 1.0))
    fail("dynamic slots: decay must be in [0, 1) (got {})", opts.decay);
  if (!(opts.swap_ratio >= 1.0) || !(opts.swap_margin >= 0.0) || !(opts.min_score >= 0.0))
    fail("dynamic slots: need swap_ratio >= 1, swap_margin >= 0, min_score >= 0 (got {}, {}, {})",
         opts.swap_ratio, opts.swap_margin, opts.min_score);
  const size_t n = static_cast<size_t>(opts.n_layers) * static_cast<size_t>(opts.n_experts);
  counts_.assign(n, 0);
  scores_.assign(n, 0.0);
  state_.assign(n, State::Absent);
  slot_bytes_.assign(n, 0);
  candidates_.reserve(n);
  victims_.reserve(n);
  placed_.reserve(n);
  evicted_.reserve(n);
  for (size_t i = 0; i < n; ++i)
    if (device_.holds(key_of(static_cast<int64_t>(i)))) state_[i] = State::Static;
}

void DynamicSlots::observe(int32_t layer, std::span<const int32_t> experts) {
  if (layer < 0 || layer >= opts_.n_layers) return;
  const int64_t base = index(layer, 0);
  for (const int32_t e : experts) {
    if (e < 0 || e >= opts_.n_experts) continue;
    const int64_t i = base + e;
    ++counts_[i];
    ++stats_.lookups;
    if (state_[i] == State::Dynamic) ++stats_.hits;
    else if (state_[i] == State::Static) ++stats_.static_hits;
  }
}

bool DynamicSlots::holds_dynamic(FfnKey key) const {
  return in_range(key) && state_[index(key.layer, key.expert)] == State::Dynamic;
}

double DynamicSlots::score(FfnKey key) const {
  return in_range(key) ? scores_[index(key.layer, key.expert)] : 0.0;
}

void DynamicSlots::evict_slot(int64_t i) {
  const FfnKey key = key_of(i);
  device_.evict(key);
  state_[i] = State::Absent;
  used_bytes_ -= slot_bytes_[i];
  slot_bytes_[i] = 0;
  --n_held_;
  ++stats_.evicted;
  evicted_.push_back(key);
}

RefreshResult DynamicSlots::refresh(const HostLookup& lookup) {
  ++stats_.refreshes;
  placed_.clear();
  evicted_.clear();
  candidates_.clear();
  victims_.clear();

  const int64_t n = static_cast<int64_t>(scores_.size());
  for (int64_t i = 0; i < n; ++i) {
    scores_[i] = scores_[i] * opts_.decay + counts_[i];
    counts_[i] = 0;
    if (state_[i] == State::Dynamic) victims_.push_back(i);
    else if (state_[i] == State::Absent && scores_[i] > 0.0 && scores_[i] >= opts_.min_score) candidates_.push_back(i);
  }
  // Hottest candidates first, coldest victims first; ties by index so the order is deterministic.
  std::sort(candidates_.begin(), candidates_.end(), [&](int64_t a, int64_t b) {
    return scores_[a] != scores_[b] ? scores_[a] > scores_[b] : a < b;
  });
  std::sort(victims_.begin(), victims_.end(), [&](int64_t a, int64_t b) {
    return scores_[a] != scores_[b] ? scores_[a] < scores_[b] : a > b;
  });

  uint64_t copied = 0;
  size_t next_victim = 0;  // victims_[0, next_victim) are evicted
  for (const int64_t c : candidates_) {
    const FfnKey key = key_of(c);
    const std::optional<HostFfn> w = lookup(key);
    if (!w) continue;  // not in host memory now (e.g. streamed)
    const uint64_t est = w->bytes() + overhead_bytes_;
    if (est > budget_bytes_) continue;
    if (opts_.max_copy_bytes_per_refresh != 0 && copied + est > opts_.max_copy_bytes_per_refresh) break;
    // Victims this candidate may displace (hysteresis), coldest first, until it fits in the budget.
    const uint64_t free_bytes = budget_bytes_ - used_bytes_;
    uint64_t freed = 0;
    size_t end_victim = next_victim;
    while (free_bytes + freed < est && end_victim < victims_.size() &&
           scores_[c] > opts_.swap_ratio * scores_[victims_[end_victim]] + opts_.swap_margin)
      freed += slot_bytes_[victims_[end_victim++]];
    if (free_bytes + freed < est) continue;  // a smaller, colder candidate may still fit
    // The device itself may be fuller than our budget assumes (other users of its memory).
    const uint64_t dev_cap = device_.capacity_bytes(), dev_used = device_.used_bytes();
    const uint64_t dev_free = dev_cap > dev_used ? dev_cap - dev_used : 0;
    if (dev_free + freed < est) continue;
    if (device_.holds(key)) {  // placed by someone else since we looked: static from now on
      state_[c] = State::Static;
      continue;
    }
    for (; next_victim < end_victim; ++next_victim) evict_slot(victims_[next_victim]);

    const uint64_t before = device_.used_bytes();
    device_.place(key, *w);
    const uint64_t after = device_.used_bytes();
    const uint64_t taken = after > before ? after - before : w->bytes();
    if (taken > w->bytes()) overhead_bytes_ = std::max(overhead_bytes_, taken - w->bytes());
    state_[c] = State::Dynamic;
    slot_bytes_[c] = taken;
    used_bytes_ += taken;
    ++n_held_;
    copied += taken;
    stats_.bytes_copied += taken;
    if (used_bytes_ > budget_bytes_) {
      // The device took more than the estimate (allocation rounding): undo; the learnt overhead keeps
      // the next estimates honest.
      evict_slot(c);
      evicted_.pop_back();
      --stats_.evicted;
      continue;
    }
    ++stats_.placed;
    placed_.push_back(key);
  }
  return RefreshResult{placed_, evicted_, copied};
}

}  // namespace moetier::sched
