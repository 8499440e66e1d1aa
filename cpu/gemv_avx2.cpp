// AVX2 + FMA + F16C build of the GEMV kernels (int8 dots with vpmaddubsw/vpmaddwd). Selected at run time through kernel_registry.hpp;
// only this file's functions carry the target, set with a pragma (no -march flags, no ODR sharing: the
// kernel bodies in gemv_simd_impl.hpp have internal linkage).
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <span>
#include <type_traits>

#include "cpu/kernel_registry.hpp"
#include "cpu/iq_blocks.hpp"
#include "cpu/iq_decode.hpp"
#include "cpu/iq_tables.hpp"
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
constexpr GemvKernel kKernels[] = {MOETIER_GEMV_KERNEL_LIST(MOETIER_K)};
#undef MOETIER_K

}  // namespace

std::span<const GemvKernel> avx2_gemv_kernels() { return kKernels; }

}  // namespace moetier::cpu::detail
