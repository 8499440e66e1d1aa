// offload/expert_catalog.hpp — the list of streamable experts and where their bytes are: ExpertId ->
// byte ranges (e.g. the gate, up and down slices of a layer's stacked expert tensors). The runtime fills
// it from the GGUF tensor index; tests fill it by hand. Each expert gets a dense index (order of add()).
// An expert may also carry its layout: the shapes, ggml types and biases of its gate / up / down
// matrices (data pointers unset), so that whoever reads its bytes can compute with them without asking
// the model.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/weight_view.hpp"
#include "offload/expert_id.hpp"

namespace moetier::offload {

/// Map ExpertId -> byte ranges, with dense indices 0..size()-1 in insertion order.
class ExpertCatalog {
 public:
  /// Adds expert `id` with its `ranges`; returns its dense index. Throws moetier::Error when `id` is
  /// already present or has a negative layer/expert.
  /// `layout`: the FFN's matrices with data == nullptr (ranges 0, 1, 2 are gate, up, down), or {} when
  /// the catalog is only used for I/O.
  uint32_t add(ExpertId id, std::vector<ByteRange> ranges, HostFfn layout = {});
  /// Dense index of `id`, or -1 when absent.
  int64_t find(ExpertId id) const {
    const auto it = index_.find(id);
    return it == index_.end() ? int64_t{-1} : static_cast<int64_t>(it->second);
  }
  /// Dense index of `id`; throws moetier::Error when absent.
  uint32_t index(ExpertId id) const;
  ExpertId id(uint32_t index) const { return ids_[index]; }
  std::span<const ByteRange> ranges(uint32_t index) const { return ranges_[index]; }
  /// Ranges of `id`; throws moetier::Error when absent.
  std::span<const ByteRange> ranges(ExpertId id) const { return ranges_[index(id)]; }
  /// Layout given to add() (data pointers null).
  const HostFfn& layout(uint32_t index) const { return layouts_[index]; }
  size_t size() const { return ids_.size(); }
  /// Largest slot_bytes_needed over all experts (bytes).
  uint64_t max_slot_bytes() const { return max_slot_bytes_; }
  /// 1 + largest layer index (0 when empty).
  int32_t n_layers() const { return n_layers_; }

 private:
  std::unordered_map<ExpertId, uint32_t, ExpertIdHash> index_;
  std::vector<ExpertId> ids_;
  std::vector<std::vector<ByteRange>> ranges_;
  std::vector<HostFfn> layouts_;
  uint64_t max_slot_bytes_ = 0;
  int32_t n_layers_ = 0;
};

}  // namespace moetier::offload
