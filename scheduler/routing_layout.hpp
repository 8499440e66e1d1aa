// The two layouts of a MoE layer's routing, as distinct types. TokenRouting is token-major, what the
// router emits: for each token its top-k experts and weights. ExpertBatches is expert-major, what the
// expert FFNs consume: for each distinct expert, the (token, slot) pairs routed to it, so that one GEMM per
// expert covers all its tokens (gather), and each result row goes back to its slot (scatter) to be
// combined in the router's slot order. Source: llama.cpp build_moe_ffn (ggml_mul_mat_id groups rows by
// expert the same way).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace moetier::sched {

/// Token-major routing of n_tokens tokens to k experts each: ids / weights [n_tokens, k] (slot s of token t
/// at t * k + s, in the router's order).
struct TokenRouting {
  int64_t n_tokens = 0;
  int64_t k = 0;
  std::vector<int32_t> ids;
  std::vector<float> weights;
  /// Sizes ids / weights for n_tokens x k (contents unspecified until the router fills them).
  void resize(int64_t n_tokens_, int64_t k_) {
    n_tokens = n_tokens_;
    k = k_;
    ids.resize(static_cast<size_t>(n_tokens * k));
    weights.resize(static_cast<size_t>(n_tokens * k));
  }
};

/// Expert-major batch layout built from a TokenRouting: the distinct experts (ascending) and, per expert,
/// its slots t * k + s in token order. Reuses its storage between layers (no allocation once sized).
class ExpertBatches {
 public:
  /// Rebuilds the layout from `r` (stable: within an expert, slots ascend).
  void build(const TokenRouting& r);
  /// Distinct experts routed to, ascending.
  std::span<const int32_t> experts() const { return experts_; }
  /// Index of `expert` in experts(), or -1 if no token was routed to it.
  int64_t index_of(int32_t expert) const;
  /// Slots (t * k + s) routed to experts()[i], in token order.
  std::span<const int32_t> slots(size_t i) const {
    return std::span<const int32_t>(order_).subspan(begin_[i], begin_[i + 1] - begin_[i]);
  }
  /// Token of a slot.
  int64_t token_of(int32_t slot) const { return slot / k_; }

 private:
  int64_t k_ = 1;
  std::vector<int32_t> order_;   // all slots, grouped by expert
  std::vector<int32_t> experts_;
  std::vector<size_t> begin_;    // experts_.size() + 1 offsets into order_
};

}  // namespace moetier::sched
