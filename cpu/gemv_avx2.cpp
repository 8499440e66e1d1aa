// AVX2 + FMA + F16C build of the GEMV kernels (int8 dots with vpmaddubsw/vpmaddwd). Selected at run time through kernel_registry.hpp;
// only this file's functions carry the target, set with a pragma (no -march flags, no ODR sharing: the
// kernel bodies in gemv_simd_impl.hpp have internal linkage).
#include <immintrin.h>

#include <cstdint>
#include <span>
#include <type_traits>

#include "cpu/kernel_registry.hpp"
#include "cpu/quant_blocks.hpp"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#define MOETIER_GEMV_VNNI 0
#include "cpu/gemv_simd_impl.hpp"
#undef MOETIER_GEMV_VNNI
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace moetier::cpu::detail {
namespace {

#define MOETIER_K(T, fn) GemvKernel{GgmlType::T, Isa::kAvx2, "" #fn ".avx2", 1, kMaxKernelTokens, &moetier::cpu::gemv_##fn}
constexpr GemvKernel kKernels[] = {
    MOETIER_K(Q4_K, q4_k), MOETIER_K(BF16, bf16), MOETIER_K(Q8_0, q8_0),
    MOETIER_K(Q5_K, q5_k), MOETIER_K(Q6_K, q6_k), MOETIER_K(Q4_0, q4_0), MOETIER_K(F16, f16),
    MOETIER_K(MXFP4, mxfp4), MOETIER_K(Q2_K, q2_k), MOETIER_K(Q3_K, q3_k), MOETIER_K(Q4_1, q4_1),
    MOETIER_K(Q5_0, q5_0), MOETIER_K(Q5_1, q5_1),
};
#undef MOETIER_K

}  // namespace

std::span<const GemvKernel> avx2_gemv_kernels() { return kKernels; }

}  // namespace moetier::cpu::detail
