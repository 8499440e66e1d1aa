// AMX-INT8 prefill GEMM for Q4_K / Q5_K (see amx_gemm.hpp for the arithmetic and why it is exact).
// Only this file carries the AMX target, set with a pragma; it runs only where cpu_features().amx_int8.
#include "cpu/amx_gemm.hpp"
#include "cpu/amx_tiles.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "common/aligned_buffer.hpp"
#include "common/error.hpp"
#include "cpu/cpu_features.hpp"
#include "cpu/matmul.hpp"
#include "cpu/quant_blocks.hpp"
#include "cpu/isa_target.hpp"

MOETIER_TARGET_PUSH("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,amx-tile,amx-int8")
MOETIER_INTRINSIC_WARNINGS_OFF()
#include "cpu/k45_avx512.hpp"

namespace moetier::cpu {
namespace {

using amx::kTile;
using amx::kTokBlock;
using amx::TileConfig;
constexpr size_t kTileBytes = 1024;  // 16 rows x 64 bytes

// Tokens' side of one super-block for a tile of 16 tokens (lane n = token n; 0 past the batch): bp[k] holds
// the int16 pair (p_2k, p_2k+1) of Q8_K sub-block sums, dy the tokens' d.
struct alignas(64) TokenSide16 {
  __m512i bp[4];
  __m512 dy;
};

// Repacked row block: per super-block the scales' f32 factors and min pairs of its 16 rows.
struct alignas(64) RowSide16 {
  float d[kTile], dmin[kTile];
  int32_t mpair[kTile][4];  // (m_2k, m_2k+1) as an int16 pair
};

struct Scratch {
  AlignedBuffer b, tok, a, rows, acc;
  int64_t nsb = 0;
  void reserve(int64_t n_sb) {
    if (n_sb <= nsb) return;
    b = AlignedBuffer(static_cast<size_t>(kTokBlock / kTile * n_sb * 4) * kTileBytes);
    tok = AlignedBuffer(static_cast<size_t>(kTokBlock / kTile * n_sb) * sizeof(TokenSide16));
    a = AlignedBuffer(static_cast<size_t>(n_sb * 2 * 4) * kTileBytes);
    rows = AlignedBuffer(static_cast<size_t>(n_sb) * sizeof(RowSide16));
    acc = AlignedBuffer(static_cast<size_t>(kTile * kTokBlock) * sizeof(float));
    nsb = n_sb;
  }
  // B tile of token tile `tt`, super-block sb, 64-element chunk c: row i = 16 tokens x 4 bytes qs[64c + 4i ..].
  int8_t* b_tile(int64_t tt, int64_t sb, int c) {
    return b.as<int8_t>() + static_cast<size_t>((tt * nsb + sb) * 4 + c) * kTileBytes;
  }
  TokenSide16& tok_side(int64_t tt, int64_t sb) { return tok.as<TokenSide16>()[tt * nsb + sb]; }
  // A tile of super-block sb, scale half h (0: sc & 7, 1: sc >> 3), chunk c: row r = 64 levels x that factor.
  uint8_t* a_tile(int64_t sb, int h, int c) { return a.as<uint8_t>() + static_cast<size_t>((sb * 2 + h) * 4 + c) * kTileBytes; }
  RowSide16& row_side(int64_t sb) { return rows.as<RowSide16>()[sb]; }
};

const BlockQ8_K& q8k(const ActivationBuffer& act, int64_t t, int64_t sb) {
  return static_cast<const BlockQ8_K*>(act.row(t))[sb];
}

// Tokens [t0, t0 + nt) into tile layout, nt <= kTokBlock; the last tile is padded with zero tokens.
void build_tokens(const ActivationBuffer& act, int64_t t0, int64_t nt, int64_t nsb, Scratch& s) {
  const int64_t ntiles = (nt + kTile - 1) / kTile;
  for (int64_t tt = 0; tt < ntiles; ++tt) {
    const int valid = static_cast<int>(std::min<int64_t>(kTile, nt - tt * kTile));
    for (int64_t sb = 0; sb < nsb; ++sb) {
      for (int c = 0; c < 4; ++c) {
        auto* dst = reinterpret_cast<int32_t*>(s.b_tile(tt, sb, c));
        for (int n = 0; n < kTile; ++n) {
          if (n >= valid) {
            for (int i = 0; i < kTile; ++i) dst[i * kTile + n] = 0;
            continue;
          }
          int32_t src[kTile];
          std::memcpy(src, q8k(act, t0 + tt * kTile + n, sb).qs + 64 * c, sizeof(src));
          for (int i = 0; i < kTile; ++i) dst[i * kTile + n] = src[i];
        }
      }
      alignas(64) int32_t bp[4][kTile] = {};
      alignas(64) float dy[kTile] = {};
      for (int n = 0; n < valid; ++n) {
        const BlockQ8_K& y = q8k(act, t0 + tt * kTile + n, sb);
        alignas(16) int32_t p[4];  // int16 sums p_0 .. p_7, two per int32
        _mm_store_si128(reinterpret_cast<__m128i*>(p), q8k_sub_block_sums(y));
        for (int k = 0; k < 4; ++k) bp[k][n] = p[k];
        dy[n] = y.d;
      }
      TokenSide16& ts = s.tok_side(tt, sb);
      for (int k = 0; k < 4; ++k) ts.bp[k] = _mm512_load_si512(bp[k]);
      ts.dy = _mm512_load_ps(dy);
    }
  }
}

// Rows [r0, r0 + nr) of W (nr <= 16) into A tiles; missing rows are zero.
template <bool kHigh>
void repack_rows(const std::byte* w, size_t row_bytes, int64_t r0, int nr, int64_t nsb, Scratch& s) {
  using Block = std::conditional_t<kHigh, BlockQ5_K, BlockQ4_K>;
  const K45Unpack k45;
  for (int64_t sb = 0; sb < nsb; ++sb) {
    RowSide16& rs = s.row_side(sb);
    for (int r = 0; r < kTile; ++r) {
      if (r >= nr) {
        for (int h = 0; h < 2; ++h)
          for (int c = 0; c < 4; ++c) _mm512_store_si512(s.a_tile(sb, h, c) + 64 * r, _mm512_setzero_si512());
        rs.d[r] = rs.dmin[r] = 0.0f;
        for (int k = 0; k < 4; ++k) rs.mpair[r][k] = 0;
        continue;
      }
      const Block& blk = reinterpret_cast<const Block*>(w + static_cast<size_t>(r0 + r) * row_bytes)[sb];
      uint64_t sc8, mn8;
      k4_scales_mins(blk.scales, sc8, mn8);
      const __m512i sc16 = _mm512_zextsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc8))));
      const __m512i lo16 = _mm512_and_si512(sc16, _mm512_set1_epi16(7)), hi16 = _mm512_srli_epi16(sc16, 3);
      for (int c = 0; c < 4; ++c) {
        const __m512i q = k45.levels(blk, c);
        // Byte products through 16-bit lanes: (q_even + 256 q_odd) * f never carries, as q * f <= 217.
        _mm512_store_si512(s.a_tile(sb, 0, c) + 64 * r, _mm512_mullo_epi16(q, k45.pair(lo16, c)));
        _mm512_store_si512(s.a_tile(sb, 1, c) + 64 * r, _mm512_mullo_epi16(q, k45.pair(hi16, c)));
      }
      const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(blk.d | (static_cast<uint32_t>(blk.dmin) << 16))));
      rs.d[r] = _mm_cvtss_f32(dd);
      rs.dmin[r] = _mm_cvtss_f32(_mm_movehdup_ps(dd));
      for (int k = 0; k < 4; ++k)
        rs.mpair[r][k] = static_cast<int32_t>(((mn8 >> (16 * k)) & 0xFF) | (((mn8 >> (16 * k + 8)) & 0xFF) << 16));
    }
  }
}

// acc[r][16 tokens] += the super-block term for the 16 rows, from the two int32 tiles C_lo, C_hi.
void epilogue(const int32_t* c_lo, const int32_t* c_hi, const RowSide16& rs, const TokenSide16& ts, float* acc,
              int64_t acc_stride) {
  for (int r = 0; r < kTile; ++r) {
    const __m512i isum = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(c_hi + kTile * r), 3),
                                          _mm512_load_si512(c_lo + kTile * r));
    __m512i msum = _mm512_setzero_si512();
    for (int k = 0; k < 4; ++k) msum = _mm512_dpwssd_epi32(msum, ts.bp[k], _mm512_set1_epi32(rs.mpair[r][k]));
    const __m512 pi = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(_mm512_set1_ps(rs.d[r]), ts.dy));
    const __m512 pm = _mm512_mul_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(_mm512_set1_ps(rs.dmin[r]), ts.dy));
    float* a = acc + r * acc_stride;
    _mm512_store_ps(a, _mm512_add_ps(_mm512_load_ps(a), _mm512_sub_ps(pi, pm)));
  }
}

template <bool kHigh>
void gemm_q45_k(const std::byte* w, int64_t n_in, const ActivationBuffer& act, float* y, int64_t n_out,
                int64_t row_begin, int64_t row_end) {
  using Block = std::conditional_t<kHigh, BlockQ5_K, BlockQ4_K>;
  const int64_t nsb = n_in / kQK_K;
  const size_t row_bytes = static_cast<size_t>(nsb) * sizeof(Block);
  thread_local Scratch s;
  s.reserve(nsb);
  TileConfig cfg;
  for (int i = 0; i < 8; ++i) {
    cfg.rows[i] = kTile;
    cfg.colsb[i] = 64;
  }
  _tile_loadconfig(&cfg);
  alignas(64) int32_t c[4][kTile * kTile];
  float* acc = s.acc.as<float>();
  for (int64_t t0 = 0; t0 < act.n_tokens(); t0 += kTokBlock) {
    const int64_t nt = std::min<int64_t>(kTokBlock, act.n_tokens() - t0);
    const int64_t ntiles = (nt + kTile - 1) / kTile;
    build_tokens(act, t0, nt, nsb, s);
    for (int64_t r0 = row_begin; r0 < row_end; r0 += kTile) {
      const int nr = static_cast<int>(std::min<int64_t>(kTile, row_end - r0));
      repack_rows<kHigh>(w, row_bytes, r0, nr, nsb, s);
      std::fill(acc, acc + kTile * kTokBlock, 0.0f);
      // While the tiles compute, the next row block's weights are fetched (its repack would otherwise wait
      // on memory): an equal share of its bytes per super-block.
      const int64_t next = std::min<int64_t>(kTile, row_end - (r0 + kTile));
      const char* next_w = reinterpret_cast<const char*>(w) + static_cast<size_t>(r0 + kTile) * row_bytes;
      const size_t next_bytes = next > 0 ? static_cast<size_t>(next) * row_bytes : 0;
      const size_t share = (next_bytes / static_cast<size_t>(nsb) + 63) / 64 * 64;
      for (int64_t sb = 0; sb < nsb; ++sb) {
        for (size_t off = static_cast<size_t>(sb) * share; off < std::min(next_bytes, static_cast<size_t>(sb + 1) * share); off += 64)
          _mm_prefetch(next_w + off, _MM_HINT_T0);
        const RowSide16& rs = s.row_side(sb);
        for (int64_t tt = 0; tt < ntiles; tt += 2) {
          const bool pair = tt + 1 < ntiles;
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          _tile_zero(3);
          for (int ch = 0; ch < 4; ++ch) {
            _tile_loadd(4, s.a_tile(sb, 0, ch), 64);
            _tile_loadd(5, s.a_tile(sb, 1, ch), 64);
            _tile_loadd(6, s.b_tile(tt, sb, ch), 64);
            _tile_dpbusd(0, 4, 6);
            _tile_dpbusd(1, 5, 6);
            if (pair) {
              _tile_loadd(7, s.b_tile(tt + 1, sb, ch), 64);
              _tile_dpbusd(2, 4, 7);
              _tile_dpbusd(3, 5, 7);
            }
          }
          _tile_stored(0, c[0], 64);
          _tile_stored(1, c[1], 64);
          epilogue(c[0], c[1], rs, s.tok_side(tt, sb), acc + tt * kTile, kTokBlock);
          if (pair) {
            _tile_stored(2, c[2], 64);
            _tile_stored(3, c[3], 64);
            epilogue(c[2], c[3], rs, s.tok_side(tt + 1, sb), acc + (tt + 1) * kTile, kTokBlock);
          }
        }
      }
      for (int64_t t = 0; t < nt; ++t)
        for (int r = 0; r < nr; ++r) y[(t0 + t) * n_out + r0 + r] = acc[r * kTokBlock + t];
    }
  }
  _tile_release();
}

}  // namespace

bool amx_gemm_supports(GgmlType weight_type) {
  return weight_type == GgmlType::Q4_K || weight_type == GgmlType::Q5_K || weight_type == GgmlType::Q4_0 ||
         weight_type == GgmlType::Q5_0;
}

void amx_gemm_rows(GgmlType weight_type, const void* w, int64_t n_in, const ActivationBuffer& act, float* y,
                   int64_t n_out, int64_t row_begin, int64_t row_end) {
  check_gemm_rows(weight_type, n_in, act, n_out, row_begin, row_end);
  if (!cpu_features().amx_int8) fail("amx_gemm_rows: this CPU (or process) has no AMX-INT8 tiles");
  if (!amx_gemm_supports(weight_type)) fail("amx_gemm_rows: no AMX kernel for {} weights", ggml_type_name(weight_type));
  if (row_begin == row_end || act.n_tokens() == 0) return;
  const auto* wb = static_cast<const std::byte*>(w);
  if (weight_type == GgmlType::Q4_0 || weight_type == GgmlType::Q5_0)
    amx::gemm_blocks32(weight_type, wb, n_in, act, y, n_out, row_begin, row_end);
  else if (weight_type == GgmlType::Q5_K)
    gemm_q45_k<true>(wb, n_in, act, y, n_out, row_begin, row_end);
  else
    gemm_q45_k<false>(wb, n_in, act, y, n_out, row_begin, row_end);
}

}  // namespace moetier::cpu

MOETIER_INTRINSIC_WARNINGS_ON()
MOETIER_TARGET_POP()
