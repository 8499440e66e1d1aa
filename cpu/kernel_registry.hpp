// Registry of the GEMV/GEMM kernels behind gemm_rows, keyed by (weight type, ISA, token count). Each
// variant either accepts a problem or declines with a reason (missing CPU feature, ISA capped by
// MOETIER_ISA, token count out of range), ending in the scalar reference that accepts everything; so
// dispatch is testable (pick a given ISA) and debuggable (explain_gemv says why a variant was not chosen).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/ggml_type.hpp"
#include "cpu/cpu_features.hpp"

namespace moetier::cpu {

/// Instruction-set levels kernels are built for (ascending).
enum class Isa : uint8_t {
  kScalar = 0,  // portable C++
  kAvx2 = 1,    // AVX2 + FMA + F16C
  kAvx512 = 2,  // AVX-512 F/BW/VL + VNNI (EVEX-encoded 256-bit code: 32 registers, vpdpbusd)
  kAmx = 3,     // kAvx512 plus AMX-INT8 tiles for batches (amx_gemm.hpp); the GEMV kernels stay AVX-512
};

/// "scalar", "avx2", "avx512", "amx".
std::string_view isa_name(Isa isa);

/// The best ISA the given features allow (cpu_features() already applies MOETIER_ISA).
Isa best_isa(const CpuFeatures& f);

/// Arguments of one kernel call: y[t * ldy + r] = dot(row r of W, activation row t) for r in
/// [row_begin, row_end), t < n_tokens (1 .. kMaxKernelTokens).
struct GemvArgs {
  const std::byte* w;      // W [n_out, n_in]: row r at w + r * w_row_bytes (read)
  size_t w_row_bytes;      // ggml_row_bytes(weight type, n_in)
  int64_t n_in;            // multiple of the weight block size
  const std::byte* act;    // activation row t at act + t * act_stride (read), prepared for the weight type
  size_t act_stride;
  int n_tokens;            // 1 .. kMaxKernelTokens
  float* y;                // (written)
  int64_t ldy;             // floats between token rows of y
  int64_t row_begin, row_end;
};
using GemvFn = void (*)(const GemvArgs&);

/// Largest token count one kernel call takes; gemm_rows splits larger batches into chunks.
inline constexpr int kMaxKernelTokens = 8;

/// One kernel variant.
struct GemvKernel {
  GgmlType weight_type;
  Isa isa;
  std::string_view name;   // e.g. "q4_k.avx2"
  int min_tokens, max_tokens;
  GemvFn fn;
};

/// Every registered variant, best first within each weight type (scalar last).
std::span<const GemvKernel> gemv_kernels();

/// The variant gemm_rows uses for (weight_type, n_tokens) when ISAs up to `max_isa` may be used.
/// Never null for a type with a CPU matmul (the scalar kernel accepts everything); null otherwise.
const GemvKernel* select_gemv(GgmlType weight_type, int n_tokens, Isa max_isa);

/// One line per registered variant of the weight type: "chosen", or why it was declined, e.g.
/// "q4_k.avx512: declined: needs avx512 (allowed up to avx2: CPU lacks AVX512_VNNI or MOETIER_ISA caps)".
std::string explain_gemv(GgmlType weight_type, int n_tokens, const CpuFeatures& f);

/// gemm_rows with the ISA capped at max_isa (tests and benchmarks compare ISAs in one process).
/// Same contract and checks as gemm_rows (matmul.hpp); max_isa above what the CPU supports is lowered.
class ActivationBuffer;
void gemm_rows_isa(Isa max_isa, GgmlType weight_type, const void* w, int64_t n_in, const ActivationBuffer& act,
                   float* y, int64_t n_out, int64_t row_begin, int64_t row_end);

namespace detail {
/// Kernel tables of the ISA-specific translation units (each compiled with its own target flags).
std::span<const GemvKernel> avx2_gemv_kernels();
std::span<const GemvKernel> avx512_gemv_kernels();
/// The scalar reference kernel of a weight type.
void gemv_scalar(GgmlType weight_type, const GemvArgs& a);
}  // namespace detail

}  // namespace moetier::cpu
