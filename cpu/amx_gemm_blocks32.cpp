// AMX-INT8 GEMM for the 32-element block formats Q4_0 and Q5_0 with Q8_0 activations (amx_tiles.hpp): e.g.
// DeepSeek-V2-Lite's expert down projections, whose 1408 inputs are not a multiple of 256. Tiles: A = 16
// weight rows x 32 unsigned levels of one block, B = 16 tokens x 32 activations of that block (8 rows of
// 4 bytes per token), C = 16 x 16 int32 block sums. The f32 part follows the canonical order per block.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "common/aligned_buffer.hpp"
#include "cpu/amx_tiles.hpp"
#include "cpu/matmul.hpp"
#include "cpu/quant_blocks.hpp"
#include "cpu/isa_target.hpp"

MOETIER_TARGET_PUSH("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,amx-tile,amx-int8")
MOETIER_INTRINSIC_WARNINGS_OFF()
#include "cpu/block32_avx2.hpp"

namespace moetier::cpu::amx {
namespace {

constexpr size_t kATileBytes = 512;  // 16 rows x 32 bytes
constexpr size_t kBTileBytes = 512;  // 8 rows x 64 bytes

struct Scratch32 {
  AlignedBuffer b, dy, offs, a, dx, acc;
  int64_t nb = 0;
  void reserve(int64_t n_blocks) {
    if (n_blocks <= nb) return;
    const auto tiles = static_cast<size_t>(kTokBlock / kTile * n_blocks);
    b = AlignedBuffer(tiles * kBTileBytes);
    dy = AlignedBuffer(tiles * kTile * sizeof(float));
    offs = AlignedBuffer(tiles * kTile * sizeof(int32_t));
    a = AlignedBuffer(static_cast<size_t>(n_blocks) * kATileBytes);
    dx = AlignedBuffer(static_cast<size_t>(n_blocks) * kTile * sizeof(float));
    acc = AlignedBuffer(static_cast<size_t>(kTile * kTokBlock) * sizeof(float));
    nb = n_blocks;
  }
  size_t tb(int64_t tt, int64_t blk) const { return static_cast<size_t>(tt * nb + blk); }
};

template <class Block, int kOffset>
void gemm(const std::byte* w, int64_t n_in, const ActivationBuffer& act, float* y, int64_t n_out, int64_t row_begin,
          int64_t row_end) {
  const int64_t nb = n_in / 32;
  const size_t row_bytes = static_cast<size_t>(nb) * sizeof(Block);
  thread_local Scratch32 s;
  s.reserve(nb);
  TileConfig cfg;
  for (int i = 0; i < 4; ++i) cfg.rows[i] = kTile, cfg.colsb[i] = 64;  // C
  cfg.rows[4] = kTile, cfg.colsb[4] = 32;                                // A: 16 rows x 32 levels
  for (int i = 6; i < 8; ++i) cfg.rows[i] = 8, cfg.colsb[i] = 64;       // B: 8 rows x 16 tokens x 4
  _tile_loadconfig(&cfg);
  alignas(64) int32_t c[2][kTile * kTile];
  float* acc = s.acc.as<float>();
  for (int64_t t0 = 0; t0 < act.n_tokens(); t0 += kTokBlock) {
    const int64_t nt = std::min<int64_t>(kTokBlock, act.n_tokens() - t0);
    const int64_t ntiles = (nt + kTile - 1) / kTile;
    // activations: B tiles, the tokens' d and offset * (sum of the block's activations)
    for (int64_t tt = 0; tt < ntiles; ++tt) {
      for (int64_t blk = 0; blk < nb; ++blk) {
        auto* dst = reinterpret_cast<int32_t*>(s.b.data() + s.tb(tt, blk) * kBTileBytes);
        float* dy = s.dy.as<float>() + s.tb(tt, blk) * kTile;
        int32_t* offs = s.offs.as<int32_t>() + s.tb(tt, blk) * kTile;
        for (int n = 0; n < kTile; ++n) {
          const int64_t t = tt * kTile + n;
          if (t >= nt) {
            for (int i = 0; i < 8; ++i) dst[i * kTile + n] = 0;
            dy[n] = 0.0f;
            offs[n] = 0;
            continue;
          }
          const BlockQ8_0& yb = static_cast<const BlockQ8_0*>(act.row(t0 + t))[blk];
          int32_t q4[8];
          std::memcpy(q4, yb.qs, sizeof(q4));
          for (int i = 0; i < 8; ++i) dst[i * kTile + n] = q4[i];
          int sum = 0;
          for (int j = 0; j < 32; ++j) sum += yb.qs[j];
          offs[n] = kOffset * sum;
          dy[n] = _cvtsh_ss(yb.d);
        }
      }
    }
    for (int64_t r0 = row_begin; r0 < row_end; r0 += kTile) {
      const int nr = static_cast<int>(std::min<int64_t>(kTile, row_end - r0));
      for (int r = 0; r < kTile; ++r) {  // weights: A tiles of unsigned levels, the rows' d
        for (int64_t blk = 0; blk < nb; ++blk) {
          uint8_t* a = s.a.as<uint8_t>() + static_cast<size_t>(blk) * kATileBytes + 32 * r;
          float* dx = s.dx.as<float>() + blk * kTile;
          if (r >= nr) {
            _mm256_store_si256(reinterpret_cast<__m256i*>(a), _mm256_setzero_si256());
            dx[r] = 0.0f;
            continue;
          }
          const Block& x = reinterpret_cast<const Block*>(w + static_cast<size_t>(r0 + r) * row_bytes)[blk];
          _mm256_store_si256(reinterpret_cast<__m256i*>(a), unsigned_levels(x));
          dx[r] = _cvtsh_ss(x.d);
        }
      }
      std::fill(acc, acc + kTile * kTokBlock, 0.0f);
      for (int64_t blk = 0; blk < nb; ++blk) {
        _tile_loadd(4, s.a.data() + static_cast<size_t>(blk) * kATileBytes, 32);
        const float* dx = s.dx.as<float>() + blk * kTile;
        for (int64_t tt = 0; tt < ntiles; tt += 2) {
          const bool pair = tt + 1 < ntiles;
          _tile_zero(0);
          _tile_loadd(6, s.b.data() + s.tb(tt, blk) * kBTileBytes, 64);
          _tile_dpbusd(0, 4, 6);
          if (pair) {
            _tile_zero(1);
            _tile_loadd(7, s.b.data() + s.tb(tt + 1, blk) * kBTileBytes, 64);
            _tile_dpbusd(1, 4, 7);
          }
          _tile_stored(0, c[0], 64);
          if (pair) _tile_stored(1, c[1], 64);
          for (int p = 0; p < (pair ? 2 : 1); ++p) {
            const __m512 dy = _mm512_load_ps(s.dy.as<float>() + s.tb(tt + p, blk) * kTile);
            const __m512i offs = _mm512_load_si512(s.offs.as<int32_t>() + s.tb(tt + p, blk) * kTile);
            float* a = acc + (tt + p) * kTile;
            for (int r = 0; r < kTile; ++r) {
              const __m512i isum = _mm512_sub_epi32(_mm512_load_si512(c[p] + kTile * r), offs);
              const __m512 tb = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(_mm512_set1_ps(dx[r]), dy));
              _mm512_store_ps(a + r * kTokBlock, _mm512_add_ps(_mm512_load_ps(a + r * kTokBlock), tb));
            }
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

void gemm_blocks32(GgmlType weight_type, const std::byte* w, int64_t n_in, const ActivationBuffer& act, float* y,
                   int64_t n_out, int64_t row_begin, int64_t row_end) {
  if (weight_type == GgmlType::Q5_0)
    gemm<BlockQ5_0, 16>(w, n_in, act, y, n_out, row_begin, row_end);
  else
    gemm<BlockQ4_0, 8>(w, n_in, act, y, n_out, row_begin, row_end);
}

}  // namespace moetier::cpu::amx

MOETIER_INTRINSIC_WARNINGS_ON()
MOETIER_TARGET_POP()
