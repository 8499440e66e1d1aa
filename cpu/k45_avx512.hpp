// Q4_K / Q5_K blocks on 512-bit registers: the levels of one 64-element chunk (two sub-blocks, one per
// 256-bit half) and the matching pair of sub-block scales. Shared by the AVX-512 tile kernels
// (gemv_tile_avx512.hpp) and the AMX repack (amx_gemm.cpp); include it only inside an AVX-512 BW target
// region (after the file's MOETIER_TARGET_PUSH / #pragma), after <immintrin.h> and cpu/quant_blocks.hpp.
// Internal linkage, so each ISA translation unit has its own copy.
#pragma once

namespace moetier::cpu {
namespace {

// Per-call constants; build once outside the row / super-block loops.
struct K45Unpack {
  __m512i m4 = _mm512_set1_epi8(0x0F);
  // upper 256-bit half: the high nibbles (the odd sub-block of each 64 elements)
  __m512i hi_by_4 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
  __m512i scale_idx[4];  // int16 lane i -> scale 2c (lower half) or 2c + 1 (upper half)
  K45Unpack() {
    for (int c = 0; c < 4; ++c)
      scale_idx[c] = _mm512_inserti64x4(_mm512_zextsi256_si512(_mm256_set1_epi16(static_cast<int16_t>(2 * c))),
                                        _mm256_set1_epi16(static_cast<int16_t>(2 * c + 1)), 1);
  }
  // Levels of elements 64c .. 64c + 63 as bytes: 0..15 (Q4_K) or 0..31 (Q5_K: bit 2c / 2c + 1 of qh[l]
  // adds 16 in the lower / upper half).
  template <class Block>
  __m512i levels(const Block& blk, int c) const {
    const __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * c)));
    __m512i q = _mm512_and_si512(_mm512_srlv_epi16(raw, hi_by_4), m4);
    if constexpr (std::is_same_v<Block, BlockQ5_K>) {
      const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh)));
      const __m512i cnt = _mm512_add_epi16(_mm512_srli_epi16(hi_by_4, 2), _mm512_set1_epi16(static_cast<int16_t>(2 * c)));
      q = _mm512_or_si512(q, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, cnt), _mm512_set1_epi8(1)), 4));
    }
    return q;
  }
  // The int16 multipliers of chunk c from the 8 sub-block values v16 (int16 lanes 0..7): v[2c] over the
  // lower half, v[2c + 1] over the upper half.
  __m512i pair(__m512i v16, int c) const { return _mm512_permutexvar_epi16(scale_idx[c], v16); }
};

// The 8 sub-block sums of a Q8_K block as int16 lanes: p_j = bsums[2j] + bsums[2j + 1].
inline __m128i q8k_sub_block_sums(const BlockQ8_K& y) {
  const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.bsums));
  return _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
}

}  // namespace
}  // namespace moetier::cpu
