// K-quant GEMV kernel bodies (Q2_K .. Q6_K with Q8_K activations), part of gemv_simd_impl.hpp: included
// by it (inside the ISA target region, in its anonymous namespace) and nowhere else. One row at a time;
// levels unpacked once per 256-element super-block and reused for up to 8 tokens; per 32 elements
// vpmaddubsw, then the sub-block scale applied with madd_acc (vpmaddwd + vpaddd, or vpdpwssd).
#ifndef MOETIER_GEMV_VNNI
#error "include gemv_simd_impl.hpp, not this file"
#endif

// ---------------------------------------------------------------- K-quants (one row, T tokens)

// vpshufb masks: low 128-bit lane = int16 lane 2k of the source lane, high lane = int16 lane 2k+1 (k < 4).
alignas(32) constexpr uint8_t kPairMask[4][32] = {
#define MOETIER_PM(k) {4*k, 4*k+1, 4*k, 4*k+1, 4*k, 4*k+1, 4*k, 4*k+1, 4*k, 4*k+1, 4*k, 4*k+1, 4*k, 4*k+1, 4*k, 4*k+1, \
                       4*k+2, 4*k+3, 4*k+2, 4*k+3, 4*k+2, 4*k+3, 4*k+2, 4*k+3, 4*k+2, 4*k+3, 4*k+2, 4*k+3, 4*k+2, 4*k+3, 4*k+2, 4*k+3}
    MOETIER_PM(0), MOETIER_PM(1), MOETIER_PM(2), MOETIER_PM(3),
#undef MOETIER_PM
};

// For 16 sub-blocks of 16 with int16 scales sc16 (lane j = sub-block j): out[k] has int16 lanes 0-7 = scale
// of sub-block 2k and lanes 8-15 = scale of 2k+1, i.e. the madd multiplier for elements 32k .. 32k+31.
inline void pair_scales(__m256i sc16, __m256i* out) {
  const __m256i lo = _mm256_permute2x128_si256(sc16, sc16, 0x00);
  const __m256i hi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
  for (int k = 0; k < 4; ++k) {
    const __m256i mask = load256(kPairMask[k]);
    out[k] = _mm256_shuffle_epi8(lo, mask);
    out[k + 4] = _mm256_shuffle_epi8(hi, mask);
  }
}

// The 16 signed 6-bit Q3_K scales (minus 32) as int16 lanes, unpacked on whole words.
inline __m256i q3k_scales16(const uint8_t* s12) {
  uint32_t u0, u1, u2;
  __builtin_memcpy(&u0, s12, 4);
  __builtin_memcpy(&u1, s12 + 4, 4);
  __builtin_memcpy(&u2, s12 + 8, 4);
  const uint32_t m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
  const __m128i v = _mm_setr_epi32(static_cast<int>((u0 & m4) | ((u2 & m2) << 4)),
                                   static_cast<int>((u1 & m4) | (((u2 >> 2) & m2) << 4)),
                                   static_cast<int>(((u0 >> 4) & m4) | (((u2 >> 4) & m2) << 4)),
                                   static_cast<int>(((u1 >> 4) & m4) | (((u2 >> 6) & m2) << 4)));
  return _mm256_cvtepi8_epi16(_mm_sub_epi8(v, _mm_set1_epi8(32)));
}

inline const BlockQ8_K& act_k(const GemvArgs& a, int t, int64_t sb) {
  return reinterpret_cast<const BlockQ8_K*>(a.act + static_cast<size_t>(t) * a.act_stride)[sb];
}

// Super-block term of Q4_K/Q5_K/Q2_K-style formats, vectorised but in the canonical f32 order:
// tb = (dy * d) * float(isum) - (dy * dmin) * float(msum). isum4/msum4 hold partial int sums (4 lanes each);
// dd = [d, dmin, ...] as f32. Returns tb in lane 0.
inline __m128 kquant_term(__m128i isum4, __m128i msum4, __m128 dd, float dy) {
  __m128i s = _mm_hadd_epi32(isum4, msum4);  // [i01, i23, m01, m23]
  s = _mm_hadd_epi32(s, s);                   // [isum, msum, isum, msum]
  const __m128 prod = _mm_mul_ps(_mm_cvtepi32_ps(s), _mm_mul_ps(dd, _mm_set1_ps(dy)));
  return _mm_sub_ss(prod, _mm_movehdup_ps(prod));
}

// vpshufb masks replicating int16 lane j of each 128-bit lane over that lane (j = 0..7).
alignas(32) constexpr uint8_t kBroadcastW[8][32] = {
#define MOETIER_BW(j) {2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, \
                       2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1}
    MOETIER_BW(0), MOETIER_BW(1), MOETIER_BW(2), MOETIER_BW(3), MOETIER_BW(4), MOETIER_BW(5), MOETIER_BW(6), MOETIER_BW(7),
#undef MOETIER_BW
};

inline __m128i fold8(__m256i v) { return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)); }

// Q4_K (kHigh = false) and Q5_K (kHigh = true). Per token and sub-block: vpmaddubsw of levels and activations,
// then multiplied by the sub-block's scale broadcast over int16 lanes and accumulated (madd_acc).
template <bool kHigh, int T>
void row_q45_k(const GemvArgs& a, int64_t r) {
  using Block = std::conditional_t<kHigh, BlockQ5_K, BlockQ4_K>;
  const Block* x = reinterpret_cast<const Block*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
  const int64_t nsb = a.n_in / kQK_K;
  __m128 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const Block& blk = x[sb];
    for (int off = 0; off < static_cast<int>(sizeof(Block)); off += 64) prefetch_ahead(reinterpret_cast<const char*>(&blk) + off);
    uint64_t sc8, mn8;
    k4_scales_mins(blk.scales, sc8, mn8);
    const __m256i sc16x2 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc8))));
    const __m128i mins16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(mn8)));
    uint32_t dbits;
    __builtin_memcpy(&dbits, &blk.d, 4);  // d, dmin adjacent
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dbits)));
    __m256i qh;
    if constexpr (kHigh) qh = load256(blk.qh);
    __m256i q[8];
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m256i raw = load256(blk.qs + 32 * c);
      q[2 * c] = _mm256_and_si256(raw, m4);
      q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
      if constexpr (kHigh) {  // bit 2c / 2c+1 of qh[l] -> +16
        const __m256i h = _mm256_srli_epi16(qh, 2 * c);
        q[2 * c] = _mm256_or_si256(q[2 * c], _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(1)), 4));
        q[2 * c + 1] = _mm256_or_si256(q[2 * c + 1], _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(2)), 3));
      }
    }
    __m256i scv[8];  // sub-block scale j over all int16 lanes, shared by the tokens
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) scv[j] = _mm256_shuffle_epi8(sc16x2, load256(kBroadcastW[j]));
    for (int t = 0; t < T; ++t) {
      const BlockQ8_K& y = act_k(a, t, sb);
      // vpmaddubsw, then times the sub-block's scale (exact: pair sums <= 2*31*127, scales <= 63)
      __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) sumi = madd_acc(sumi, _mm256_maddubs_epi16(q[j], load256(y.qs + 32 * j)), scv[j]);
      const __m128i isum4 = fold8(sumi);
      const __m256i bs = load256(y.bsums);
      const __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
      const __m128i msum4 = _mm_madd_epi16(mins16, pairs);  // sum_j m_j * (bsums[2j] + bsums[2j+1])
      acc[t] = _mm_add_ss(acc[t], kquant_term(isum4, msum4, dd, y.d));
    }
  }
  for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = _mm_cvtss_f32(acc[t]);
}

template <int T>
void row_q6_k(const GemvArgs& a, int64_t r) {
  const BlockQ6_K* x = reinterpret_cast<const BlockQ6_K*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
  const int64_t nsb = a.n_in / kQK_K;
  float acc[T] = {};
  const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const BlockQ6_K& blk = x[sb];
    for (int off = 0; off < static_cast<int>(sizeof(BlockQ6_K)); off += 64) prefetch_ahead(reinterpret_cast<const char*>(&blk) + off);
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales)));
    __m256i q[8], sv[8];
    pair_scales(sc16, sv);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load256(blk.ql + 64 * h), ql1 = load256(blk.ql + 64 * h + 32);
      const __m256i qh = load256(blk.qh + 32 * h);
      // level = low nibble | (2 bits of qh at 2g) << 4; the masked 16-bit shifts never mix bytes' kept bits
      q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
      q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
      q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
      q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                     _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
    }
    const float d = h2f(blk.d);
    for (int t = 0; t < T; ++t) {
      const BlockQ8_K& y = act_k(a, t, sb);
      __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k)
        sumi = madd_acc(sumi, _mm256_maddubs_epi16(q[k], load256(y.qs + 32 * k)), sv[k]);
      const int offs = hsum_i32(_mm256_madd_epi16(load256(y.bsums), sc16));  // sum_j sc_j * bsum_j
      const int isum = hsum_i32(sumi) - 32 * offs;
      acc[t] = acc[t] + (y.d * d) * static_cast<float>(isum);
    }
  }
  for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = acc[t];
}

// Q2_K (kQ3 = false: levels 0..3, scale = low nibble, min = high nibble) and Q3_K (kQ3 = true: levels
// low2 | hbit << 2 in 0..7 minus 4, signed 6-bit scales).
template <bool kQ3, int T>
void row_q23_k(const GemvArgs& a, int64_t r) {
  using Block = std::conditional_t<kQ3, BlockQ3_K, BlockQ2_K>;
  const Block* x = reinterpret_cast<const Block*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
  const int64_t nsb = a.n_in / kQK_K;
  float acc[T] = {};
  const __m256i m2 = _mm256_set1_epi8(0x03);
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const Block& blk = x[sb];
    for (int off = 0; off < static_cast<int>(sizeof(Block)); off += 64) prefetch_ahead(reinterpret_cast<const char*>(&blk) + off);
    __m256i sc16, side16;  // side16: the int16 multipliers of bsums (Q3_K: the scales, Q2_K: the mins)
    if constexpr (kQ3) {
      sc16 = side16 = q3k_scales16(blk.scales);
    } else {
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales));
      sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(0x0F)));
      side16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F)));
    }
    __m256i q[8], sv[8];
    pair_scales(sc16, sv);
    __m256i hm;
    if constexpr (kQ3) hm = load256(blk.hmask);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i q2 = load256(blk.qs + 32 * h);
#pragma GCC unroll 4
      for (int s = 0; s < 4; ++s) {
        __m256i v = _mm256_and_si256(_mm256_srli_epi16(q2, 2 * s), m2);
        if constexpr (kQ3) {  // high bit 4h + s of hmask[l] -> +4
          const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << (4 * h + s)));
          v = _mm256_or_si256(v, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), _mm256_set1_epi8(4)));
        }
        q[4 * h + s] = v;
      }
    }
    const float d = h2f(blk.d);
    float dmin = 0.0f;
    if constexpr (!kQ3) dmin = h2f(blk.dmin);
    for (int t = 0; t < T; ++t) {
      const BlockQ8_K& y = act_k(a, t, sb);
      __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k)
        sumi = madd_acc(sumi, _mm256_maddubs_epi16(q[k], load256(y.qs + 32 * k)), sv[k]);
      const int side = hsum_i32(_mm256_madd_epi16(load256(y.bsums), side16));
      float tb;
      if constexpr (kQ3) {
        tb = (y.d * d) * static_cast<float>(hsum_i32(sumi) - 4 * side);
      } else {
        tb = (y.d * d) * static_cast<float>(hsum_i32(sumi)) - (y.d * dmin) * static_cast<float>(side);
      }
      acc[t] = acc[t] + tb;
    }
  }
  for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = acc[t];
}

