// SIMD GEMV kernel bodies shared by gemv_avx2.cpp and gemv_avx512.cpp. Each includes this file inside its
// own `#pragma GCC target` region after defining MOETIER_GEMV_VNNI (0: AVX2 maddubs/madd for int8 dots;
// 1: AVX512_VNNI vpdpbusd / vpdpwssd on 256-bit EVEX registers). The two builds run the same algorithms;
// only those fused instructions differ, so the AVX2 build's tests cover the AVX-512 build's logic. Everything here has internal linkage (anonymous
// namespace), so the two ISA builds never share a symbol.
//
// All kernels reproduce vec_dot_scalar bit for bit (canonical order in vec_dot.hpp): integer block sums are
// exact in any order (the maddubs pair sums stay below 32767: |signed weight| <= 128 via the sign trick,
// unsigned levels <= 63, activations |q| <= 127), and the f32 operations per (row, token) happen in the
// same sequence as in the scalar code.
//  * Q8_0: ggml's own x86 order (one 8-lane accumulator per row and token, FMA per block), so Q8_0 models
//    match llama.cpp bit for bit; see rows_q8_0_ggml.
//  * other 32-element block formats: 8 rows at a time, one row per f32 lane; per block the 8 rows' integer dot
//    vectors are transposed-and-reduced into one vector of 8 block sums, then scaled and accumulated.
//  * K-quants: one row at a time; levels unpacked once per super-block, reused for up to 8 tokens; per 32
//    elements vpmaddubsw, then the sub-block scale applied by vpmaddwd (AVX2) or vpdpwssd (VNNI).
//  * F16/BF16: one row at a time, two 8-lane accumulators = the 16 canonical lanes. (F32 weights follow
//    ggml's own F32 orders in ggml_math.cpp and do not come through the registry's SIMD kernels.)
// Requires: <immintrin.h>, <array>, cpu/kernel_registry.hpp, cpu/quant_blocks.hpp, cpu/iq_blocks.hpp,
// cpu/iq_decode.hpp and cpu/iq_tables.hpp included before the pragma.
#ifndef MOETIER_GEMV_VNNI
#error "define MOETIER_GEMV_VNNI before including gemv_simd_impl.hpp"
#endif

namespace moetier::cpu {
namespace {

// ---------------------------------------------------------------- primitives

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }  // exact (F16C)

inline uint16_t load_u16(const void* p) {
  uint16_t v;
  __builtin_memcpy(&v, p, 2);
  return v;
}

// acc + sum over groups of 4 of u8(u) * s8(s), per int32 lane (exact: no pair sum reaches 2^15 here).
inline __m256i dot_acc(__m256i acc, __m256i u, __m256i s) {
#if MOETIER_GEMV_VNNI
  return _mm256_dpbusd_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

// Signed weights w (int8) times activations a (int8): |w| * (a with w's sign).
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if MOETIER_GEMV_VNNI
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}
// acc + int16 pair products p16 * s16 summed into int32 lanes (vpmaddwd + vpaddd, or vpdpwssd). Exact: the
// K-quant callers keep |p16 * s16| pair sums far below 2^31.
inline __m256i madd_acc(__m256i acc, __m256i p16, __m256i s16) {
#if MOETIER_GEMV_VNNI
  return _mm256_dpwssd_epi32(acc, p16, s16);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, s16));
#endif
}

inline __m256i dot_signed(__m256i w, __m256i a) { return dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w)); }

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// Lane r of the result = sum of the 8 int32 lanes of p[r].
inline __m256i reduce8(const __m256i* p) {
  const __m256i ab = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
  const __m256i cd = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20), _mm256_permute2x128_si256(ab, cd, 0x31));
}

// 16 packed nibbles -> 32 bytes: element j < 16 = low nibble of byte j, element 16 + j = high nibble.
inline __m256i nibbles32(const uint8_t* qs) {
  const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  const __m256i hi_by_4 = _mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4));  // upper lane >> 4
  return _mm256_and_si256(hi_by_4, _mm256_set1_epi8(0x0F));
}

// 32 bits (little-endian u32 at p) -> 32 bytes 0xFF / 0x00.
inline __m256i bits32(const uint8_t* p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(v)),
      _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
  const __m256i mask = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Weight streams are read once: prefetch this far ahead of the current position (bytes) so that more cache
// lines are in flight than the out-of-order window alone would request.
constexpr int kPrefetchBytes = 2048;
inline void prefetch_ahead(const void* p) {
  _mm_prefetch(static_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0);
}

// ---------------------------------------------------------------- 32-element block formats

// Each format: Block type, Act (activation block), signed levels or not, decode(), scale(), and for the
// "_1" formats min() (added term m * s).
// 8 fp16 values (bits) -> 8 f32 lanes in one conversion.
inline __m256 f16x8(uint16_t h0, uint16_t h1, uint16_t h2, uint16_t h3, uint16_t h4, uint16_t h5, uint16_t h6,
                    uint16_t h7) {
  __m128i v = _mm_cvtsi32_si128(h0);
  v = _mm_insert_epi16(v, h1, 1);
  v = _mm_insert_epi16(v, h2, 2);
  v = _mm_insert_epi16(v, h3, 3);
  v = _mm_insert_epi16(v, h4, 4);
  v = _mm_insert_epi16(v, h5, 5);
  v = _mm_insert_epi16(v, h6, 6);
  v = _mm_insert_epi16(v, h7, 7);
  return _mm256_cvtph_ps(v);
}

// Q4_0 / Q5_0 / MXFP4 decode to unsigned levels u = w + kOffset; the kernels subtract kOffset * sum(a).
struct FmtQ4_0 {
  using Block = BlockQ4_0;
  static constexpr bool kSigned = false, kHasMin = false;
  static constexpr int kOffset = 8;
  static __m256i decode(const Block& b) { return nibbles32(b.qs); }
  static float scale(const Block& b) { return h2f(b.d); }
};
struct FmtQ5_0 {
  using Block = BlockQ5_0;
  static constexpr bool kSigned = false, kHasMin = false;
  static constexpr int kOffset = 16;
  static __m256i decode(const Block& b) {
    return _mm256_or_si256(nibbles32(b.qs), _mm256_and_si256(bits32(b.qh), _mm256_set1_epi8(0x10)));
  }
  static float scale(const Block& b) { return h2f(b.d); }
};
// kMxfp4Values + 12 (0..24), so that a u8 x s8 product applies.
alignas(16) constexpr uint8_t kMxfp4Plus12[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};
struct FmtMxfp4 {
  using Block = BlockMxfp4;
  static constexpr bool kSigned = false, kHasMin = false;
  static constexpr int kOffset = 12;
  static __m256i decode(const Block& b) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(kMxfp4Plus12)));
    return _mm256_shuffle_epi8(table, nibbles32(b.qs));
  }
  static float scale(const Block& b) {
    const uint32_t bits = e8m0_to_f32_half_bits(b.e);
    float f;
    __builtin_memcpy(&f, &bits, 4);
    return f;
  }
};
struct FmtQ4_1 {
  using Block = BlockQ4_1;
  static constexpr bool kSigned = false, kHasMin = true;
  static constexpr int kOffset = 0;
  static __m256i decode(const Block& b) { return nibbles32(b.qs); }
  static float scale(const Block& b) { return h2f(b.d); }
  static float min(const Block& b) { return h2f(b.m); }
};
struct FmtQ5_1 {
  using Block = BlockQ5_1;
  static constexpr bool kSigned = false, kHasMin = true;
  static constexpr int kOffset = 0;
  static __m256i decode(const Block& b) {
    return _mm256_or_si256(nibbles32(b.qs), _mm256_and_si256(bits32(b.qh), _mm256_set1_epi8(0x10)));
  }
  static float scale(const Block& b) { return h2f(b.d); }
  static float min(const Block& b) { return h2f(b.m); }
};

// Scales (and mins) of block b of 8 rows as one f32 vector (fp16 formats: one conversion).
template <class F>
inline __m256 scales8(const typename F::Block* const* w, int64_t b) {
  if constexpr (std::is_same_v<F, FmtMxfp4>) {  // e8m0_to_f32_half_bits on 8 lanes
    const __m256i e = _mm256_setr_epi32(w[0][b].e, w[1][b].e, w[2][b].e, w[3][b].e, w[4][b].e, w[5][b].e,
                                        w[6][b].e, w[7][b].e);
    const __m256i normal = _mm256_slli_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(1)), 23);
    const __m256i tiny = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), e);  // e = 0, 1: subnormals
    const __m256i is_tiny = _mm256_cmpgt_epi32(_mm256_set1_epi32(2), e);
    return _mm256_castsi256_ps(_mm256_blendv_epi8(normal, tiny, is_tiny));
  } else {
    return f16x8(w[0][b].d, w[1][b].d, w[2][b].d, w[3][b].d, w[4][b].d, w[5][b].d, w[6][b].d, w[7][b].d);
  }
}
template <class F>
inline __m256 mins8(const typename F::Block* const* w, int64_t b) {
  return f16x8(w[0][b].m, w[1][b].m, w[2][b].m, w[3][b].m, w[4][b].m, w[5][b].m, w[6][b].m, w[7][b].m);
}

template <class F>
using ActBlockOf = std::conditional_t<F::kHasMin, BlockQ8_1, BlockQ8_0>;

template <class F>
inline __m256i block_dot(__m256i w, __m256i a) {
  if constexpr (F::kSigned) return dot_signed(w, a);
  else return dot_u8s8(w, a);
}

// kOffset * (sum of the 32 activation levels) for formats stored with an offset, else 0.
template <class F>
inline int offset_correction(__m256i av) {
  if constexpr (F::kOffset != 0) return F::kOffset * hsum_i32(dot_u8s8(_mm256_set1_epi8(1), av));
  else return 0;
}

template <class F>
inline float act_sum(const ActBlockOf<F>& y) {
  if constexpr (F::kHasMin) return h2f(y.s);
  else return 0.0f;
}

// 8 rows r0..r0+7, T tokens.
template <class F, int T>
void rows8_q32(const GemvArgs& a, int64_t r0) {
  using Block = typename F::Block;
  using Act = ActBlockOf<F>;
  const int64_t nb = a.n_in / 32;
  const Block* w[8];
  for (int r = 0; r < 8; ++r) w[r] = reinterpret_cast<const Block*>(a.w + static_cast<size_t>(r0 + r) * a.w_row_bytes);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  // Prefetch each row's stream `ahead` bytes ahead; past the row's end it continues in row r + 8, so the
  // next group's 8 streams are already in flight when it starts (short rows stall on each start).
  constexpr int64_t kBlocksPerLine = 64 / sizeof(Block) > 0 ? 64 / sizeof(Block) : 1;
  const int64_t row_bytes = static_cast<int64_t>(a.w_row_bytes);
  const int64_t ahead = row_bytes < 1024 ? row_bytes : 1024;  // at most one group ahead
  for (int64_t b = 0; b < nb; ++b) {
    if (b % kBlocksPerLine == 0) {
      const int64_t v = b * static_cast<int64_t>(sizeof(Block)) + ahead;  // < 2 * row_bytes
      const int64_t skip = v >= row_bytes ? 7 * row_bytes : 0;
      for (int r = 0; r < 8; ++r) _mm_prefetch(reinterpret_cast<const char*>(w[r]) + v + skip, _MM_HINT_T0);
    }
    const __m256 dx = scales8<F>(w, b);
    __m256 mx = _mm256_setzero_ps();
    if constexpr (F::kHasMin) mx = mins8<F>(w, b);
    if constexpr (T == 1) {  // decode and multiply at once: nothing to keep for other tokens
      const Act& y = reinterpret_cast<const Act*>(a.act)[b];
      const __m256i av = load256(y.qs);
      __m256i p[8];
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) p[r] = block_dot<F>(F::decode(w[r][b]), av);
      __m256i isum = reduce8(p);
      if constexpr (F::kOffset != 0) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(offset_correction<F>(av)));
      __m256 tb = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dx, _mm256_set1_ps(h2f(y.d))));
      if constexpr (F::kHasMin) tb = _mm256_add_ps(tb, _mm256_mul_ps(mx, _mm256_set1_ps(act_sum<F>(y))));
      acc[0] = _mm256_add_ps(acc[0], tb);
    } else {
      __m256i wv[8], wu[8];  // levels; for signed levels also |w| (the u8 operand), shared by the tokens
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) {
        wv[r] = F::decode(w[r][b]);
        wu[r] = F::kSigned ? _mm256_sign_epi8(wv[r], wv[r]) : wv[r];
      }
      for (int t = 0; t < T; ++t) {
        const Act& y = reinterpret_cast<const Act*>(a.act + static_cast<size_t>(t) * a.act_stride)[b];
        const __m256i av = load256(y.qs);
        __m256i p[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; ++r) p[r] = dot_u8s8(wu[r], F::kSigned ? _mm256_sign_epi8(av, wv[r]) : av);
        __m256i isum = reduce8(p);
        if constexpr (F::kOffset != 0) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(offset_correction<F>(av)));
        __m256 tb = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dx, _mm256_set1_ps(h2f(y.d))));
        if constexpr (F::kHasMin) tb = _mm256_add_ps(tb, _mm256_mul_ps(mx, _mm256_set1_ps(act_sum<F>(y))));
        acc[t] = _mm256_add_ps(acc[t], tb);
      }
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(a.y + t * a.ldy + r0, acc[t]);
}

// One row, T tokens (row tails): same f32 sequence as the 8-row path, integer sums by horizontal add.
template <class F, int T>
void row1_q32(const GemvArgs& a, int64_t r) {
  using Block = typename F::Block;
  using Act = ActBlockOf<F>;
  const int64_t nb = a.n_in / 32;
  const Block* w = reinterpret_cast<const Block*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
  float acc[T] = {};
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i wv = F::decode(w[b]);
    const float dx = F::scale(w[b]);
    for (int t = 0; t < T; ++t) {
      const Act& y = reinterpret_cast<const Act*>(a.act + static_cast<size_t>(t) * a.act_stride)[b];
      const __m256i av = load256(y.qs);
      const int isum = hsum_i32(block_dot<F>(wv, av)) - offset_correction<F>(av);
      float tb = static_cast<float>(isum) * (dx * h2f(y.d));
      if constexpr (F::kHasMin) tb = tb + F::min(w[b]) * act_sum<F>(y);
      acc[t] = acc[t] + tb;
    }
  }
  for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = acc[t];
}

template <class F, int T>
void run_q32(const GemvArgs& a) {
  int64_t r = a.row_begin;
  for (; r + 8 <= a.row_end; r += 8) rows8_q32<F, T>(a, r);
  for (; r < a.row_end; ++r) row1_q32<F, T>(a, r);
}

#include "cpu/gemv_simd_kquants.hpp"  // NOLINT: textual part of this file (same namespace and target)
#include "cpu/gemv_simd_iq.hpp"       // NOLINT: likewise (IQ formats)

template <void (*Row)(const GemvArgs&, int64_t)>
void run_rows(const GemvArgs& a) {
  for (int64_t r = a.row_begin; r < a.row_end; ++r) Row(a, r);
}

// ---------------------------------------------------------------- Q8_0 in ggml's order

// Sum of the 8 lanes in ggml's hsum_float_8 tree: (l[k] + l[k+4]), then (s0 + s2) + (s1 + s3).
inline float hsum8_ggml(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// Q8_0 x Q8_0 for R rows r0.. and T tokens in ggml_vec_dot_q8_0_q8_0's x86 order (= dot_q8_0_ggml in
// vec_dot_scalar.cpp): per (row, token) one 8-lane f32 accumulator, per block
// acc = fma(set1(dx * dy), cvt(8 int32 lanes of 4 products), acc), hsum8_ggml at the end. The R x T
// accumulators are independent, so several rows hide the FMA latency at one token.
template <int R, int T>
void rows_q8_0_ggml(const GemvArgs& a, int64_t r0) {
  const int64_t nb = a.n_in / 32;
  const BlockQ8_0* w[R];
  for (int r = 0; r < R; ++r) w[r] = reinterpret_cast<const BlockQ8_0*>(a.w + static_cast<size_t>(r0 + r) * a.w_row_bytes);
  const BlockQ8_0* y[T];
  for (int t = 0; t < T; ++t) y[t] = reinterpret_cast<const BlockQ8_0*>(a.act + static_cast<size_t>(t) * a.act_stride);
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    if (b % 2 == 0)
      for (int r = 0; r < R; ++r) prefetch_ahead(w[r] + b);  // one line per 68 bytes of weights
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256i wv = load256(w[r][b].qs);
      const __m256i wu = _mm256_sign_epi8(wv, wv);
      const float dx = h2f(w[r][b].d);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m256i p = dot_u8s8(wu, _mm256_sign_epi8(load256(y[t][b].qs), wv));
        acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * h2f(y[t][b].d)), _mm256_cvtepi32_ps(p), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) a.y[t * a.ldy + r0 + r] = hsum8_ggml(acc[r][t]);
}

template <int T>
void run_q8_0_ggml(const GemvArgs& a) {
  constexpr int R = T == 1 ? 4 : T <= 3 ? 2 : 1;  // R x T accumulators fit the 16 AVX2 registers
  int64_t r = a.row_begin;
  for (; r + R <= a.row_end; r += R) rows_q8_0_ggml<R, T>(a, r);
  for (; r < a.row_end; ++r) rows_q8_0_ggml<1, T>(a, r);
}

// ---------------------------------------------------------------- float weights (16 canonical lanes)

struct WF16 {
  using Elem = uint16_t;
  static __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
};
struct WBF16 {
  using Elem = uint16_t;
  static __m256 load8(const uint16_t* p) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
  }
};

inline float reduce16(__m256 lo, __m256 hi) {
  const __m256 s8 = _mm256_add_ps(lo, hi);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// lo/hi[t] += w[0..16) * x_t[i..i+16) for the T tokens (the 16 canonical lanes as two 8-lane halves).
template <class W, int T>
inline void float_step(const GemvArgs& a, const typename W::Elem* wp, int64_t i, __m256* lo, __m256* hi) {
  const __m256 w0 = W::load8(wp), w1 = W::load8(wp + 8);
  for (int t = 0; t < T; ++t) {
    const float* x = reinterpret_cast<const float*>(a.act + static_cast<size_t>(t) * a.act_stride) + i;
    lo[t] = _mm256_add_ps(lo[t], _mm256_mul_ps(w0, _mm256_loadu_ps(x)));
    hi[t] = _mm256_add_ps(hi[t], _mm256_mul_ps(w1, _mm256_loadu_ps(x + 8)));
  }
}

template <class W, int T>
void row_float(const GemvArgs& a, int64_t r) {
  using Elem = typename W::Elem;
  const Elem* w = reinterpret_cast<const Elem*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
  const int64_t n = a.n_in, n16 = n / 16 * 16;
  __m256 lo[T], hi[T];
  for (int t = 0; t < T; ++t) lo[t] = hi[t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n16; i += 16) {
    if (i % 32 == 0) prefetch_ahead(w + i);  // one line per 64 bytes of weights
    float_step<W, T>(a, w + i, i, lo, hi);
  }
  if (n16 < n) {  // tail: zero weights beyond n (activation rows are zero-padded to 16)
    Elem tail[16] = {};
    __builtin_memcpy(tail, w + n16, static_cast<size_t>(n - n16) * sizeof(Elem));
    float_step<W, T>(a, tail, n16, lo, hi);
  }
  for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = reduce16(lo[t], hi[t]);
}

// ---------------------------------------------------------------- token-count dispatch

template <template <int> class K>
void by_tokens(const GemvArgs& a) {
  switch (a.n_tokens) {
    case 1: K<1>::run(a); break;
    case 2: K<2>::run(a); break;
    case 3: K<3>::run(a); break;
    case 4: K<4>::run(a); break;
    case 5: K<5>::run(a); break;
    case 6: K<6>::run(a); break;
    case 7: K<7>::run(a); break;
    default: K<8>::run(a); break;
  }
}

template <int T> struct KQ8_0 { static void run(const GemvArgs& a) { run_q8_0_ggml<T>(a); } };
template <class F> struct Q32 { template <int T> struct K { static void run(const GemvArgs& a) { run_q32<F, T>(a); } }; };
template <class W> struct Flt { template <int T> struct K { static void run(const GemvArgs& a) { run_rows<row_float<W, T>>(a); } }; };
template <int T> struct KQ4K { static void run(const GemvArgs& a) { run_rows<row_q45_k<false, T>>(a); } };
template <int T> struct KQ5K { static void run(const GemvArgs& a) { run_rows<row_q45_k<true, T>>(a); } };
template <int T> struct KQ6K { static void run(const GemvArgs& a) { run_rows<row_q6_k<T>>(a); } };
template <int T> struct KQ2K { static void run(const GemvArgs& a) { run_rows<row_q23_k<false, T>>(a); } };
template <int T> struct KQ3K { static void run(const GemvArgs& a) { run_rows<row_q23_k<true, T>>(a); } };

void gemv_q8_0(const GemvArgs& a) { by_tokens<KQ8_0>(a); }
void gemv_q4_0(const GemvArgs& a) { by_tokens<Q32<FmtQ4_0>::K>(a); }
void gemv_q5_0(const GemvArgs& a) { by_tokens<Q32<FmtQ5_0>::K>(a); }
void gemv_mxfp4(const GemvArgs& a) { by_tokens<Q32<FmtMxfp4>::K>(a); }
void gemv_q4_1(const GemvArgs& a) { by_tokens<Q32<FmtQ4_1>::K>(a); }
void gemv_q5_1(const GemvArgs& a) { by_tokens<Q32<FmtQ5_1>::K>(a); }
void gemv_q2_k(const GemvArgs& a) { by_tokens<KQ2K>(a); }
void gemv_q3_k(const GemvArgs& a) { by_tokens<KQ3K>(a); }
void gemv_q4_k(const GemvArgs& a) { by_tokens<KQ4K>(a); }
void gemv_q5_k(const GemvArgs& a) { by_tokens<KQ5K>(a); }
void gemv_q6_k(const GemvArgs& a) { by_tokens<KQ6K>(a); }
void gemv_f16(const GemvArgs& a) { by_tokens<Flt<WF16>::K>(a); }
void gemv_bf16(const GemvArgs& a) { by_tokens<Flt<WBF16>::K>(a); }
template <class F> struct IqGrid { template <int T> struct K { static void run(const GemvArgs& a) { run_rows<row_iq_grid<F, T>>(a); } }; };
template <class F> struct Iq1 { template <int T> struct K { static void run(const GemvArgs& a) { run_rows<row_iq1<F, T>>(a); } }; };
template <int T> struct KIq4Xs { static void run(const GemvArgs& a) { run_iq4_xs<T>(a); } };
void gemv_iq2_xxs(const GemvArgs& a) { by_tokens<IqGrid<IqIq2xxs>::K>(a); }
void gemv_iq2_xs(const GemvArgs& a) { by_tokens<IqGrid<IqIq2xs>::K>(a); }
void gemv_iq2_s(const GemvArgs& a) { by_tokens<IqGrid<IqIq2s>::K>(a); }
void gemv_iq3_xxs(const GemvArgs& a) { by_tokens<IqGrid<IqIq3xxs>::K>(a); }
void gemv_iq3_s(const GemvArgs& a) { by_tokens<IqGrid<IqIq3s>::K>(a); }
void gemv_iq1_s(const GemvArgs& a) { by_tokens<Iq1<IqIq1s>::K>(a); }
void gemv_iq1_m(const GemvArgs& a) { by_tokens<Iq1<IqIq1m>::K>(a); }
void gemv_iq4_xs(const GemvArgs& a) { by_tokens<KIq4Xs>(a); }
void gemv_iq4_nl(const GemvArgs& a) { by_tokens<Q32<FmtIQ4_NL>::K>(a); }

}  // namespace
}  // namespace moetier::cpu

// The kernel table of an ISA build: K(weight type, kernel name) for every SIMD kernel above. Each ISA
// file (gemv_avx2.cpp, gemv_avx512.cpp) defines K to make its GemvKernel entries.
#define MOETIER_GEMV_KERNEL_LIST(K)                                                                           \
  K(Q4_K, q4_k), K(BF16, bf16), K(Q8_0, q8_0), K(Q5_K, q5_k), K(Q6_K, q6_k), K(Q4_0, q4_0), K(F16, f16),   \
      K(MXFP4, mxfp4), K(Q2_K, q2_k), K(Q3_K, q3_k), K(Q4_1, q4_1), K(Q5_0, q5_0), K(Q5_1, q5_1),          \
      K(IQ2_XXS, iq2_xxs), K(IQ2_XS, iq2_xs), K(IQ2_S, iq2_s), K(IQ3_XXS, iq3_xxs), K(IQ3_S, iq3_s),          \
      K(IQ1_S, iq1_s), K(IQ1_M, iq1_m), K(IQ4_XS, iq4_xs), K(IQ4_NL, iq4_nl)
