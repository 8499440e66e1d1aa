// Size breakdown of a MoE model's weights by role (embeddings, attention, norms, dense FFN, shared and
// routed experts, router), routed experts per layer and per expert, and the bytes one decode token must
// read. Used by `moetier inspect`, `synth --dry-run`, and by `plan` / `bench` for their budgets.
// Roles come from classify_tensor (runtime/models/tensor_roles.hpp), i.e. llama.cpp's tensor names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/gguf/gguf_file.hpp"

namespace moetier::models {

/// Largest expert count / id the breakdown accepts (real models have at most a few hundred); a routed
/// tensor beyond it is counted as `other`, so that hostile files cannot make the tables huge.
inline constexpr int64_t kMaxExperts = 1 << 16;

/// Routed-expert bytes of one MoE layer.
struct ExpertLayerBytes {
  int32_t layer = -1;
  int64_t n_experts = 0;                 // experts seen in this layer (stacked: shape[0]; legacy: max id + 1)
  uint64_t bytes = 0;                    // all routed-expert tensors of the layer (biases included)
  std::vector<uint64_t> expert_bytes;    // [n_experts]: bytes of expert e (gate + up + down (+ biases))
  /// Bytes of one expert when all experts of the layer have the same size, else 0.
  uint64_t uniform_expert_bytes() const;
  /// Sum of the `k` largest experts (= k * expert size when uniform): an upper bound of what a token
  /// that routes to k experts of this layer reads.
  uint64_t top_k_bytes(int64_t k) const;
};

/// Bytes of a model's tensors by role. Every tensor is counted in exactly one role field, so
/// embedding + output + attention + norm + dense_ffn + shared_experts + routed_experts + router + other
/// == total.
struct SizeBreakdown {
  uint64_t total = 0;
  uint64_t embedding = 0;       // token_embd
  uint64_t output = 0;          // output.weight (LM head); 0 when tied to token_embd
  uint64_t attention = 0;       // q/k/v/o, MLA projections, sinks, attention biases
  uint64_t norm = 0;            // every norm weight, output_norm included
  uint64_t dense_ffn = 0;       // ffn_{gate,up,down} of dense layers
  uint64_t shared_experts = 0;  // *_shexp and the shared-expert gate
  uint64_t routed_experts = 0;  // *_exps (stacked) or ffn_*.E (legacy per-expert)
  uint64_t router = 0;          // ffn_gate_inp (+ bias), exp_probs_b
  uint64_t other = 0;           // names classify_tensor does not know (and implausible expert tensors)
  uint64_t nextn = 0;           // every tensor of a NextN / MTP layer (one with blk.N.nextn.* tensors, glm4moe):
                                // loaded-and-ignored, never read by a decode step, in no other field

  std::vector<ExpertLayerBytes> expert_layers;  // MoE layers in increasing layer order
  uint64_t embedding_row_bytes = 0;             // one row of token_embd (what a token's lookup reads)
  bool tied_output = false;                     // no output.weight: token_embd is also the LM head

  /// Bytes one decode token reads from the weights: every tensor that is not a routed expert, except
  /// that token_embd counts one row (its lookup) unless it is also the LM head (tied output: then it is
  /// read whole), plus the `n_expert_used` largest experts of every MoE layer. KV-cache reads are not
  /// included. n_expert_used <= 0 counts no routed expert.
  uint64_t decode_bytes_per_token(int64_t n_expert_used) const;
};

/// Computes the breakdown of `tensors` (any order; n_bytes and shape as parsed from GGUF). Never
/// throws: unknown tensor names are counted in `other`.
SizeBreakdown compute_size_breakdown(const std::vector<gguf::TensorInfo>& tensors);

/// "1.23 GiB", "456.7 MiB", "12.0 KiB", "17 B": binary units with 3 significant digits.
std::string format_bytes(uint64_t bytes);

}  // namespace moetier::models
