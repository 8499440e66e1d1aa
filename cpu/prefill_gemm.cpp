// Prefill GEMM (see prefill_gemm.hpp): dequantise a tile of W rows to f32, multiply it by every token with
// a single-threaded oneDNN f32 matmul writing straight into the tile's columns of Y (ldy = Y's row stride).
#include "cpu/prefill_gemm.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/aligned_buffer.hpp"
#include "common/error.hpp"
#include "common/half.hpp"
#include "cpu/cpu_features.hpp"
#include "cpu/dequant.hpp"
#include "cpu/onednn_matmul.hpp"
#include "cpu/quant_blocks.hpp"

namespace moetier::cpu {
namespace {

// oneDNN (OpenMP runtime) uses omp_get_max_threads() of the calling thread: 1 keeps it on this thread.
class OmpThreadsGuard {
 public:
  explicit OmpThreadsGuard(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~OmpThreadsGuard() { omp_set_num_threads(saved_); }
  OmpThreadsGuard(const OmpThreadsGuard&) = delete;
  OmpThreadsGuard& operator=(const OmpThreadsGuard&) = delete;

 private:
  int saved_;
};

// Plans are keyed by the batch size, which varies per expert; bound the cache (oneDNN keeps its own
// primitive cache, so re-planning a dropped shape is cheap).
constexpr size_t kMaxPlans = 256;

}  // namespace

bool prefill_gemm_supports(GgmlType t) { return can_dequantize(t); }

int64_t prefill_gemm_columns(GgmlType weight_type, int64_t n_in) {
  return weight_type == GgmlType::Q4_1 || weight_type == GgmlType::Q5_1 ? n_in + n_in / kQK8_1 : n_in;
}

void activation_values(const ActivationBuffer& act, float* x) { activation_values(act, x, 0, act.n_tokens()); }

void activation_values(const ActivationBuffer& act, float* x, int64_t t_begin, int64_t t_end) {
  const int64_t n = act.n_in();
  // Q8_1 rows (Q4_1 / Q5_1 weights) carry one more column per block: s, the block sum ggml multiplies by
  // the weight block's min.
  const int64_t cols = act.type() == GgmlType::Q8_1 ? n + n / kQK8_1 : n;
  for (int64_t t = t_begin; t < t_end; ++t) {
    float* out = x + t * cols;
    switch (act.type()) {
      case GgmlType::Q8_0: {
        const auto* b = static_cast<const BlockQ8_0*>(act.row(t));
        for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_f32(b[i / kQK8_0].d) * static_cast<float>(b[i / kQK8_0].qs[i % kQK8_0]);
        break;
      }
      case GgmlType::Q8_1: {
        const auto* b = static_cast<const BlockQ8_1*>(act.row(t));
        for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_f32(b[i / kQK8_1].d) * static_cast<float>(b[i / kQK8_1].qs[i % kQK8_1]);
        for (int64_t j = 0; j < n / kQK8_1; ++j) out[n + j] = fp16_to_f32(b[j].s);
        break;
      }
      case GgmlType::Q8_K: {
        const auto* b = static_cast<const BlockQ8_K*>(act.row(t));
        for (int64_t i = 0; i < n; ++i) out[i] = b[i / kQK_K].d * static_cast<float>(b[i / kQK_K].qs[i % kQK_K]);
        break;
      }
      case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
        std::copy_n(static_cast<const float*>(act.row(t)), n, out);
        break;
      default:
        fail("prefill GEMM: activations of type {} cannot be turned back into f32", ggml_type_name(act.type()));
    }
  }
}

namespace {

// One row of a tile: dequantize_row, except for Q4_1 / Q5_1, whose n_in values are d * q (the block's min
// left out: a copy of the row with every min zeroed, through the same dequantiser; d * q is exact in f32)
// followed by the n_in / 32 mins. `scratch` holds the copy (grown on demand).
template <typename Block>
void split_min_row(const std::byte* src, float* dst, int64_t n_in, std::vector<std::byte>& scratch, GgmlType type) {
  const int64_t nb = n_in / kQK8_1;
  scratch.resize(static_cast<size_t>(nb) * sizeof(Block));
  auto* blocks = reinterpret_cast<Block*>(scratch.data());
  std::memcpy(blocks, src, scratch.size());
  for (int64_t b = 0; b < nb; ++b) {
    dst[n_in + b] = fp16_to_f32(blocks[b].m);
    blocks[b].m = 0;  // +0.0 in fp16
  }
  dequantize_row(type, blocks, dst, n_in);
}

void dequantize_tile_row(GgmlType type, const std::byte* src, float* dst, int64_t n_in, std::vector<std::byte>& scratch) {
  static_assert(kQK4_1 == kQK8_1 && kQK5_1 == kQK8_1);
  switch (type) {
    case GgmlType::Q4_1: split_min_row<BlockQ4_1>(src, dst, n_in, scratch, type); return;
    case GgmlType::Q5_1: split_min_row<BlockQ5_1>(src, dst, n_in, scratch, type); return;
    default: dequantize_row(type, src, dst, n_in); return;
  }
}

}  // namespace

struct PrefillGemmWorker::Impl {
  OnednnMatmul mm;
  AlignedBuffer tile;      // kPrefillTileRows x prefill_gemm_columns(type, n_in) of the tile type
  std::vector<float> row;  // one dequantised row on its way to bf16
  std::vector<std::byte> blocks;  // a Q4_1 / Q5_1 row with its mins zeroed (dequantize_tile_row)
};

PrefillGemmWorker::PrefillGemmWorker() : impl_(std::make_unique<Impl>()) {}
PrefillGemmWorker::~PrefillGemmWorker() = default;

void PrefillGemmWorker::rows(GgmlType type, const void* w, int64_t n_in, const float* x, int64_t m, float* y,
                             int64_t ldy, int64_t row_begin, int64_t row_end) {
  rows(type, w, n_in, x, MatmulType::F32, m, y, ldy, row_begin, row_end);
}

void PrefillGemmWorker::rows(GgmlType type, const void* w, int64_t n_in, const void* x, MatmulType tile_type,
                             int64_t m, float* y, int64_t ldy, int64_t row_begin, int64_t row_end) {
  if (!prefill_gemm_supports(type))
    fail("prefill GEMM: weight type {} has no dequantiser", ggml_type_name(type));
  if (tile_type != MatmulType::F32 && tile_type != MatmulType::BF16)
    fail("prefill GEMM: tiles must be f32 or bf16, not {}", to_string(tile_type));
  const int64_t bs = ggml_type_info(type).block_size;
  if (n_in <= 0 || n_in % bs != 0)
    fail("prefill GEMM: n_in = {} must be a positive multiple of {}'s block size {}", n_in, ggml_type_name(type), bs);
  if (m <= 0) fail("prefill GEMM: the batch must have at least one token (m = {})", m);
  if (row_begin < 0 || row_begin > row_end || ldy < row_end)
    fail("prefill GEMM: rows [{}, {}) do not fit Y rows of {} floats", row_begin, row_end, ldy);
  if (row_begin == row_end) return;

  Impl& im = *impl_;
  const bool bf16 = tile_type == MatmulType::BF16;
  const size_t rb = ggml_row_bytes(type, static_cast<uint64_t>(n_in));
  const int64_t k = prefill_gemm_columns(type, n_in);
  const auto* wb = static_cast<const std::byte*>(w);
  // Weights usable in place: F32 rows for f32 tiles, BF16 rows for bf16 tiles.
  const bool in_place = type == (bf16 ? GgmlType::BF16 : GgmlType::F32);
  const size_t tile_bytes = static_cast<size_t>(kPrefillTileRows * k) * type_size(tile_type);
  if (!in_place && im.tile.size() < tile_bytes) im.tile = AlignedBuffer(tile_bytes, 64);
  if (bf16 && !in_place && im.row.size() < static_cast<size_t>(k)) im.row.resize(static_cast<size_t>(k));
  if (im.mm.n_plans() > kMaxPlans) im.mm.clear_plans();

  OmpThreadsGuard one_thread(1);
  for (int64_t r0 = row_begin; r0 < row_end; r0 += kPrefillTileRows) {
    const int64_t n = std::min(kPrefillTileRows, row_end - r0);
    const void* wt = wb + static_cast<size_t>(r0) * rb;
    if (!in_place) {
      for (int64_t r = 0; r < n; ++r) {
        const std::byte* src = wb + static_cast<size_t>(r0 + r) * rb;
        if (!bf16) {
          dequantize_tile_row(type, src, im.tile.as<float>() + r * k, n_in, im.blocks);
        } else {
          dequantize_tile_row(type, src, im.row.data(), n_in, im.blocks);
          uint16_t* dst = im.tile.as<uint16_t>() + r * k;
          for (int64_t i = 0; i < k; ++i) dst[i] = f32_to_bf16(im.row[static_cast<size_t>(i)]);
        }
      }
      wt = im.tile.data();
    }
    MatmulPlan& plan = im.mm.plan({m, n, k, tile_type, tile_type, false, ldy});
    im.mm.execute(plan, x, wt, y + r0);
    if (r0 == row_begin) implementation_ = plan.implementation();
  }
}

MatmulType prefill_tile_type() {
  static const MatmulType chosen = [] {
    // bf16 tiles round weights and activations to 8 mantissa bits: ~1e-3 relative error against f32's
    // ~1e-6, visible against llama.cpp's logits; so they are opt-in.
    const char* env = std::getenv("MOETIER_PREFILL_TILE");
    const std::string v = env ? env : "f32";
    if (v == "bf16") return MatmulType::BF16;
    if (v != "auto") return MatmulType::F32;
    if (!cpu_features().avx512_bf16) return MatmulType::F32;  // oneDNN would emulate bf16: always slower
    // Measure one tile of each on this thread (a few milliseconds, once).
    const int64_t m = 256, n = kPrefillTileRows, k = 2048;
    std::vector<float> xf(static_cast<size_t>(m * k), 0.5f), w(static_cast<size_t>(n * k), 0.25f), y(static_cast<size_t>(m * n));
    std::vector<uint16_t> xb(xf.size(), f32_to_bf16(0.5f));
    PrefillGemmWorker worker;
    auto time_of = [&](MatmulType t) {
      const void* x = t == MatmulType::BF16 ? static_cast<const void*>(xb.data()) : xf.data();
      double best = 1e30;
      for (int rep = 0; rep < 3; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        worker.rows(GgmlType::F32, w.data(), k, x, t, m, y.data(), n, 0, n);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      return best;
    };
    return time_of(MatmulType::BF16) < time_of(MatmulType::F32) ? MatmulType::BF16 : MatmulType::F32;
  }();
  return chosen;
}

}  // namespace moetier::cpu
