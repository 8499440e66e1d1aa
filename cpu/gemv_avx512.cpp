// AVX-512 (F/BW/VL/VNNI) build of the GEMV kernels: the AVX2 algorithms on EVEX 256-bit registers (32 of
// them) with vpdpbusd for the int8 dots of the 32-element block formats. Selected at run time through kernel_registry.hpp;
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
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#endif
#define MOETIER_GEMV_VNNI 1
#include "cpu/gemv_simd_impl.hpp"
// GCC 12 flags the _mm512_undefined_* operands inside its own broadcast/insert/extract intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "cpu/gemv_tile_avx512.hpp"
#pragma GCC diagnostic pop
#undef MOETIER_GEMV_VNNI
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace moetier::cpu::detail {
namespace {

#define MOETIER_K(T, fn) GemvKernel{GgmlType::T, Isa::kAvx512, "" #fn ".avx512", 1, kMaxKernelTokens, &moetier::cpu::gemv_##fn}
#define MOETIER_TILE(T, fn, min_tokens, max_tokens) GemvKernel{GgmlType::T, Isa::kAvx512, "" #fn ".avx512", min_tokens, max_tokens, &moetier::cpu::gemv_##fn}
constexpr GemvKernel kKernels[] = {MOETIER_GEMV_TILE_KERNEL_LIST(MOETIER_TILE), MOETIER_GEMV_KERNEL_LIST(MOETIER_K)};
#undef MOETIER_TILE
#undef MOETIER_K

}  // namespace

std::span<const GemvKernel> avx512_gemv_kernels() { return kKernels; }

}  // namespace moetier::cpu::detail
