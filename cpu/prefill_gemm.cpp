// Prefill GEMM (see prefill_gemm.hpp): dequantise a tile of W rows to f32, multiply it by every token with
// a single-threaded oneDNN f32 matmul writing straight into the tile's columns of Y (ldy = Y's row stride).
#include "cpu/prefill_gemm.hpp"

#include <omp.h>

#include <algorithm>

#include "common/aligned_buffer.hpp"
#include "common/error.hpp"
#include "common/half.hpp"
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

void activation_values(const ActivationBuffer& act, float* x) { activation_values(act, x, 0, act.n_tokens()); }

void activation_values(const ActivationBuffer& act, float* x, int64_t t_begin, int64_t t_end) {
  const int64_t n = act.n_in();
  for (int64_t t = t_begin; t < t_end; ++t) {
    float* out = x + t * n;
    switch (act.type()) {
      case GgmlType::Q8_0: {
        const auto* b = static_cast<const BlockQ8_0*>(act.row(t));
        for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_f32(b[i / kQK8_0].d) * static_cast<float>(b[i / kQK8_0].qs[i % kQK8_0]);
        break;
      }
      case GgmlType::Q8_1: {
        const auto* b = static_cast<const BlockQ8_1*>(act.row(t));
        for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_f32(b[i / kQK8_1].d) * static_cast<float>(b[i / kQK8_1].qs[i % kQK8_1]);
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

struct PrefillGemmWorker::Impl {
  OnednnMatmul mm;
  AlignedBuffer tile;
};

PrefillGemmWorker::PrefillGemmWorker() : impl_(std::make_unique<Impl>()) {}
PrefillGemmWorker::~PrefillGemmWorker() = default;

void PrefillGemmWorker::rows(GgmlType type, const void* w, int64_t n_in, const float* x, int64_t m, float* y,
                             int64_t ldy, int64_t row_begin, int64_t row_end) {
  if (!prefill_gemm_supports(type))
    fail("prefill GEMM: weight type {} has no dequantiser", ggml_type_name(type));
  const int64_t bs = ggml_type_info(type).block_size;
  if (n_in <= 0 || n_in % bs != 0)
    fail("prefill GEMM: n_in = {} must be a positive multiple of {}'s block size {}", n_in, ggml_type_name(type), bs);
  if (m <= 0) fail("prefill GEMM: the batch must have at least one token (m = {})", m);
  if (row_begin < 0 || row_begin > row_end || ldy < row_end)
    fail("prefill GEMM: rows [{}, {}) do not fit Y rows of {} floats", row_begin, row_end, ldy);
  if (row_begin == row_end) return;

  Impl& im = *impl_;
  const size_t rb = ggml_row_bytes(type, static_cast<uint64_t>(n_in));
  const auto* wb = static_cast<const std::byte*>(w);
  const size_t tile_bytes = static_cast<size_t>(kPrefillTileRows * n_in) * sizeof(float);
  if (type != GgmlType::F32 && im.tile.size() < tile_bytes) im.tile = AlignedBuffer(tile_bytes, 64);
  if (im.mm.n_plans() > kMaxPlans) im.mm.clear_plans();

  OmpThreadsGuard one_thread(1);
  for (int64_t r0 = row_begin; r0 < row_end; r0 += kPrefillTileRows) {
    const int64_t n = std::min(kPrefillTileRows, row_end - r0);
    const void* wt = wb + static_cast<size_t>(r0) * rb;
    if (type != GgmlType::F32) {
      float* tile = im.tile.as<float>();
      for (int64_t r = 0; r < n; ++r)
        dequantize_row(type, wb + static_cast<size_t>(r0 + r) * rb, tile + r * n_in, n_in);
      wt = tile;
    }
    MatmulPlan& plan = im.mm.plan({m, n, n_in, MatmulType::F32, MatmulType::F32, false, ldy});
    im.mm.execute(plan, x, wt, y + r0);
    if (r0 == row_begin) implementation_ = plan.implementation();
  }
}

}  // namespace moetier::cpu
