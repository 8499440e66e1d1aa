// Q4_0 / Q5_0 blocks on 256-bit registers: the 32 unsigned levels u = w + 8 (Q4_0) or w + 16 (Q5_0) in
// element order. Shared by the AVX2 dequantisation (dequant_avx2.cpp) and the AMX block GEMM
// (amx_gemm_blocks32.cpp); include it only inside an AVX2 target region, after <immintrin.h> and
// cpu/quant_blocks.hpp. Internal linkage, so each translation unit has its own copy.
#pragma once

#include <cstring>

namespace moetier::cpu {
namespace {

// 16 packed nibbles -> 32 bytes: element j < 16 = low nibble of byte j, element 16 + j = its high nibble.
inline __m256i nibbles_x32(const uint8_t* qs) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

inline __m256i unsigned_levels(const BlockQ4_0& x) { return nibbles_x32(x.qs); }

inline __m256i unsigned_levels(const BlockQ5_0& x) {
  uint32_t qh;
  std::memcpy(&qh, x.qh, 4);
  // bit e of qh -> 0x10 in byte e (the 5th bit of element e)
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(qh)),
      _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  const __m256i high = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
  return _mm256_or_si256(nibbles_x32(x.qs), high);
}

}  // namespace
}  // namespace moetier::cpu
