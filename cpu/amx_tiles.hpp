// Internal to the AMX GEMMs (amx_gemm.cpp: K-quants, amx_gemm_blocks32.cpp: 32-element block formats):
// the tile configuration record and the block GEMM's entry point. Not part of cpu/'s interface.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/ggml_type.hpp"

namespace moetier::cpu {
class ActivationBuffer;
}

namespace moetier::cpu::amx {

inline constexpr int kTile = 16;           // rows of an A / C tile, tokens of a B / C tile
inline constexpr int64_t kTokBlock = 128;  // tokens put into tile layout at once (8 tiles)

/// LDTILECFG's 64-byte record (palette 1): rows and bytes per row of tiles 0..7.
struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

/// amx_gemm_rows for Q4_0 / Q5_0 weights x Q8_0 activations (arguments already checked): per 32-element
/// block one TDPBUSD of unsigned levels (w + 8 / w + 16) by the activations, the offset times the block's
/// activation sum subtracted, then t = float(isum) * (dx * dy) added to each output in block order: the
/// canonical order of vec_dot.hpp, so bit-identical with gemm_rows' GEMV kernels.
void gemm_blocks32(GgmlType weight_type, const std::byte* w, int64_t n_in, const ActivationBuffer& act, float* y,
                   int64_t n_out, int64_t row_begin, int64_t row_end);

}  // namespace moetier::cpu::amx
