#include "scheduler/linear_exec.hpp"

#include "common/half.hpp"
#include "cpu/dequant.hpp"
#include "cpu/matmul.hpp"
#include "cpu/prefill_gemm.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::sched {

struct LinearExec::Impl {
  cpu::ActivationBuffer act;
  std::vector<std::unique_ptr<cpu::PrefillGemmWorker>> gemm;  // one per pool worker, made on first use
  std::vector<float> x_values;                                 // the GEMM's X: activation_values(act)
  std::vector<uint16_t> x_bf16;                                // ... rounded to bf16 for bf16 tiles
};

LinearExec::LinearExec(ThreadPool* pool) : impl_(std::make_unique<Impl>()), pool_(pool) {}
LinearExec::~LinearExec() = default;

namespace {
// Below this many activation elements one thread quantises (a dispatch costs about a microsecond).
constexpr int64_t kMinParallelQuantize = 1 << 14;
}  // namespace

void LinearExec::quantize(GgmlType weight_type, const float* x, int64_t n_tokens, int64_t n_in,
                          cpu::ActivationBuffer& act, cpu::F32Path f32_path) {
  if (batch_invariant_) f32_path = cpu::F32Path::kVecDot;  // the order of a batch of one (ggml_mul_mat_f32_order)
  cpu::prepare_activations(weight_type, n_tokens, n_in, act, f32_path);
  ThreadPool& pool = pool_ ? *pool_ : global_pool();
  if (pool.size() == 1 || n_tokens < 2 || n_tokens * n_in < kMinParallelQuantize) {
    cpu::quantize_activation_rows(x, 0, n_tokens, act);
    return;
  }
  pool.parallel_for(n_tokens, 1, [&](int64_t b, int64_t e, int) { cpu::quantize_activation_rows(x, b, e, act); });
}

void LinearExec::operator()(const HostWeight& w, const float* x, int64_t n_tokens, float* y, cpu::F32Path f32_path) {
  quantize(w.type, x, n_tokens, w.n_in, impl_->act, f32_path);
  apply(w, impl_->act, y);
}

void LinearExec::apply(const HostWeight& w, const cpu::ActivationBuffer& act, float* y) {
  apply_pair(w, nullptr, act, y, nullptr);
}

void LinearExec::apply_pair(const HostWeight& w1, const HostWeight* w2, const cpu::ActivationBuffer& act, float* y1,
                            float* y2) {
  const int64_t n1 = w1.n_out, n2 = w2 ? w2->n_out : 0, n_tokens = act.n_tokens();
  cpu::check_gemm_rows(w1.type, w1.n_in, act, n1, 0, n1);
  if (w2) cpu::check_gemm_rows(w2->type, w2->n_in, act, n2, 0, n2);
  // Rows [0, n1) are w1's, [n1, n1 + n2) w2's; one range may cover parts of both.
  auto rows = [&](int64_t begin, int64_t end) {
    if (begin < n1) cpu::gemm_rows(w1.type, w1.data, w1.n_in, act, y1, n1, begin, std::min(end, n1));
    if (end > n1) cpu::gemm_rows(w2->type, w2->data, w2->n_in, act, y2, n2, std::max(begin, n1) - n1, end - n1);
  };
  // Below ~64 K multiply-adds a dispatch to the pool costs more than it saves.
  constexpr int64_t kMinParallelWork = 1 << 16;
  ThreadPool& pool = pool_ ? *pool_ : global_pool();
  if (pool.size() == 1 || (n1 + n2) * w1.n_in * n_tokens < kMinParallelWork || n1 + n2 < 32) {
    rows(0, n1 + n2);
    return;
  }
  pool.parallel_for(n1 + n2, cpu::kGemmRowAlign, [&](int64_t begin, int64_t end, int) { rows(begin, end); });
}

bool LinearExec::takes_gemm(const HostWeight& w, int64_t n_tokens) const {
  return !batch_invariant_ && gemm_min_tokens_ > 0 && n_tokens >= gemm_min_tokens_ && cpu::prefill_gemm_supports(w.type) &&
         !cpu::gemm_rows_uses_amx(w.type, n_tokens);
}

void LinearExec::batch(const HostWeight& w, const float* x, int64_t n_tokens, float* y, cpu::F32Path f32_path) {
  if (!takes_gemm(w, n_tokens)) {
    (*this)(w, x, n_tokens, y, f32_path);
    return;
  }
  ++gemm_matmuls_;
  // The numbers ggml's dot products multiply: activations quantised (or rounded) for the weight type.
  quantize(w.type, x, n_tokens, w.n_in, impl_->act, f32_path);
  const int64_t k = cpu::prefill_gemm_columns(w.type, w.n_in);  // n_in (+ Q8_1 block sums for Q4_1 / Q5_1)
  impl_->x_values.resize(static_cast<size_t>(n_tokens * k));
  const cpu::MatmulType tile = cpu::prefill_tile_type();
  if (tile == cpu::MatmulType::BF16) impl_->x_bf16.resize(impl_->x_values.size());
  ThreadPool& pool = pool_ ? *pool_ : global_pool();
  pool.parallel_for(n_tokens, 1, [&](int64_t b, int64_t e, int) {
    cpu::activation_values(impl_->act, impl_->x_values.data(), b, e);
    if (tile == cpu::MatmulType::BF16)
      for (int64_t i = b * k; i < e * k; ++i) impl_->x_bf16[static_cast<size_t>(i)] = f32_to_bf16(impl_->x_values[static_cast<size_t>(i)]);
  });
  const void* xv = tile == cpu::MatmulType::BF16 ? static_cast<const void*>(impl_->x_bf16.data()) : impl_->x_values.data();
  auto& workers = impl_->gemm;
  while (workers.size() < static_cast<size_t>(pool.size())) workers.push_back(std::make_unique<cpu::PrefillGemmWorker>());
  // Tiles of kPrefillTileRows rows from row 0 whatever the thread count: results do not depend on -t.
  pool.parallel_for(w.n_out, cpu::kPrefillTileRows, [&](int64_t begin, int64_t end, int worker) {
    workers[static_cast<size_t>(worker)]->rows(w.type, w.data, w.n_in, xv, tile, n_tokens, y, w.n_out, begin, end);
  });
}

void LinearExec::get_row(const HostWeight& w, int64_t row, float* out) {
  cpu::dequantize_row(w.type, w.data + static_cast<uint64_t>(row) * w.row_bytes, out, w.n_in);
}

}  // namespace moetier::sched
