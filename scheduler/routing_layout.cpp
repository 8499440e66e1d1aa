#include "scheduler/routing_layout.hpp"

#include <algorithm>

namespace moetier::sched {

void ExpertBatches::build(const TokenRouting& r) {
  k_ = std::max<int64_t>(1, r.k);
  const size_t n = r.ids.size();
  order_.resize(n);
  for (size_t i = 0; i < n; ++i) order_[i] = static_cast<int32_t>(i);
  std::stable_sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) { return r.ids[a] < r.ids[b]; });
  experts_.clear();
  begin_.clear();
  for (size_t i = 0; i < n; ++i)
    if (i == 0 || r.ids[order_[i]] != r.ids[order_[i - 1]]) {
      experts_.push_back(r.ids[order_[i]]);
      begin_.push_back(i);
    }
  begin_.push_back(n);
}

int64_t ExpertBatches::index_of(int32_t expert) const {
  const auto it = std::lower_bound(experts_.begin(), experts_.end(), expert);
  return it != experts_.end() && *it == expert ? it - experts_.begin() : -1;
}

}  // namespace moetier::sched
