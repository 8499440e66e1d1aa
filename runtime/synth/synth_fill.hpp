// Seeded random tensor contents for `moetier synth`, written block by block in the ggml formats
// (ggml-common.h layouts, see cpu/quant_blocks.hpp). Values are drawn from a counter-based generator:
// the bytes of block b of tensor t depend only on (seed, t, b), so any chunking of the output gives the
// same file and chunks can be produced in any order.
#pragma once

#include <cstdint>
#include <span>

#include "common/ggml_type.hpp"

namespace moetier::synth {

/// What the values of a tensor are meant to look like.
enum class ValueKind {
  Weight,  // N(0, 1) * scale  (scale = 1/sqrt(n_in) for projections)
  Norm,    // 1 + 0.1 * N(0, 1)  (RMSNorm weights; F32)
};

/// How to fill one tensor.
struct FillSpec {
  GgmlType type = GgmlType::F32;
  ValueKind kind = ValueKind::Weight;
  float scale = 1.0f;       // standard deviation of Weight values
  uint64_t stream = 0;      // per-tensor key: derive with tensor_stream(seed, tensor_index)
};

/// Types fill_tensor_bytes can write: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K,
/// MXFP4, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS.
bool can_synthesize(GgmlType type);

/// Per-tensor stream key from the user's seed and the tensor's index in the file.
uint64_t tensor_stream(uint64_t seed, uint64_t tensor_index);

/// Writes bytes [offset, offset + out.size()) of a tensor filled per `spec` (offset and size need not
/// be block aligned). Quantised blocks are valid by construction: finite fp16 scales in a range that
/// gives values of standard deviation ~spec.scale, random 4/5/6/8-bit codes. Throws Error if the type
/// cannot be synthesized (checked once per call, never inside the loop).
void fill_tensor_bytes(const FillSpec& spec, uint64_t offset, std::span<std::byte> out);

}  // namespace moetier::synth
