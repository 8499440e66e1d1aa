// ExpertSource: where the host bytes of routed experts come from, one MoE layer at a time: the mmapped
// GGUF file (ResidentExperts) or the bounded DRAM cache filled from NVMe (runtime/tiered). Sources only
// hand out bytes; where an expert is computed is the executor's choice (scheduler/moe_executor.hpp). The
// executor announces the experts a batch needs from this source (begin), then takes them one at a time in
// the order the source chooses (next): a streaming source hands out experts as their reads complete, so
// I/O overlaps compute. The combination order is fixed by the router's slot order, not by this order, so
// every source gives bit-identical results.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "common/weight_view.hpp"

namespace moetier::sched {

class ExpertSource {
 public:
  virtual ~ExpertSource() = default;
  /// Layer `layer` will compute `experts` (distinct ids, ascending) from this source; reads start now.
  /// Weights handed out for the previous layer become invalid.
  virtual void begin(int32_t layer, std::span<const int32_t> experts) = 0;
  /// The next expert of the current set and its weights (valid until the following next() or begin());
  /// -1 once all were handed out. May block on I/O. Throws moetier::Error on a failed read.
  virtual int32_t next(HostFfn& out) = 0;
  /// Whether `expert` of `layer` is served by this source (a streaming source serves the experts its plan
  /// homes on NVMe; the resident source serves every expert).
  virtual bool serves(int32_t layer, int32_t expert) const { (void)layer, (void)expert; return true; }
  /// Moves outstanding I/O along; the executor calls it between groups it computes.
  virtual void poll() {}
  /// True when predictions of upcoming layers are useful (streaming sources).
  virtual bool wants_prediction() const { return false; }
  /// Hint: layer `layer` is likely to use `experts` (predicted from an earlier hidden state).
  virtual void predict(int32_t layer, std::span<const int32_t> experts) { (void)layer, (void)experts; }
};

/// Source for experts that live in host memory at fixed addresses (the mmapped GGUF, or any lookup):
/// hands them out in ascending id order. `Lookup` is HostFfn(int32_t layer, int32_t expert).
template <typename Lookup>
class ResidentExperts final : public ExpertSource {
 public:
  explicit ResidentExperts(Lookup lookup) : lookup_(std::move(lookup)) {}
  void begin(int32_t layer, std::span<const int32_t> experts) override {
    layer_ = layer;
    ids_.assign(experts.begin(), experts.end());
    pos_ = 0;
  }
  int32_t next(HostFfn& out) override {
    if (pos_ >= ids_.size()) return -1;
    const int32_t e = ids_[pos_++];
    out = lookup_(layer_, e);
    return e;
  }

 private:
  Lookup lookup_;
  int32_t layer_ = 0;
  std::vector<int32_t> ids_;
  size_t pos_ = 0;
};

}  // namespace moetier::sched
