// ExpertProvider: how the MoE executor obtains routed experts' weights for one layer and batch. The
// executor announces the distinct experts a batch routes to (begin), then takes them one at a time in
// the order the provider chooses (next): resident experts first, streamed experts as their reads
// complete, so I/O overlaps compute. The combination order of expert outputs is fixed by the router's
// slot order, not by this order, so every provider gives bit-identical results.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/models/weights.hpp"

namespace moetier::models {

class ExpertProvider {
 public:
  virtual ~ExpertProvider() = default;
  /// Layer `layer` will compute `experts` (distinct ids, ascending). Streamed experts start loading.
  /// Any weights handed out for the previous layer become invalid.
  virtual void begin(int32_t layer, std::span<const int32_t> experts) = 0;
  /// The next expert of the current set to compute and its weights (valid until the following next()
  /// or begin()); -1 once all were handed out. May block on I/O. Throws Error on a failed read.
  virtual int32_t next(FfnWeights& out) = 0;
  /// True when predictions of upcoming layers are useful (streaming providers).
  virtual bool wants_prediction() const { return false; }
  /// Hint: layer `layer` is likely to use `experts` (predicted from an earlier hidden state).
  virtual void predict(int32_t layer, std::span<const int32_t> experts) { (void)layer, (void)experts; }
};

/// Provider for experts that all live in memory (mmapped GGUF or any fixed lookup): hands them out in
/// ascending id order. `lookup` must outlive the provider.
template <typename Lookup>
class ResidentExperts final : public ExpertProvider {
 public:
  explicit ResidentExperts(Lookup lookup) : lookup_(std::move(lookup)) {}
  void begin(int32_t layer, std::span<const int32_t> experts) override {
    layer_ = layer;
    ids_.assign(experts.begin(), experts.end());
    pos_ = 0;
  }
  int32_t next(FfnWeights& out) override {
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

}  // namespace moetier::models
