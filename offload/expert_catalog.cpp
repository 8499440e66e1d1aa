// offload/expert_catalog.cpp — ExpertCatalog (see expert_catalog.hpp).
#include "offload/expert_catalog.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "offload/slot_layout.hpp"

namespace moetier::offload {

uint32_t ExpertCatalog::add(ExpertId id, std::vector<ByteRange> ranges, HostFfn layout) {
  if (id.layer < 0 || id.expert < 0) fail("expert catalog: invalid expert id ({}, {})", id.layer, id.expert);
  const auto index = static_cast<uint32_t>(ids_.size());
  if (!index_.emplace(id, index).second) fail("expert catalog: {} added twice", to_string(id));
  max_slot_bytes_ = std::max(max_slot_bytes_, slot_bytes_needed(ranges));
  n_layers_ = std::max(n_layers_, id.layer + 1);
  ids_.push_back(id);
  ranges_.push_back(std::move(ranges));
  layout.gate.data = layout.up.data = layout.down.data = nullptr;
  layouts_.push_back(layout);
  return index;
}

uint32_t ExpertCatalog::index(ExpertId id) const {
  const int64_t i = find(id);
  if (i < 0) fail("expert catalog: unknown expert ({})", to_string(id));
  return static_cast<uint32_t>(i);
}

}  // namespace moetier::offload
