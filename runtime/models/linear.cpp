#include "runtime/models/linear.hpp"

#include "cpu/dequant.hpp"
#include "cpu/matmul.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::models {

struct LinearExec::Impl {
  cpu::ActivationBuffer act;
};

LinearExec::LinearExec() : impl_(std::make_unique<Impl>()) {}
LinearExec::~LinearExec() = default;

void LinearExec::operator()(const Weight& w, const float* x, int64_t n_tokens, float* y, cpu::F32Path f32_path) {
  cpu::quantize_activations(w.type, x, n_tokens, w.n_in, impl_->act, f32_path);
  // Below ~64 K multiply-adds a dispatch to the pool costs more than it saves.
  constexpr int64_t kMinParallelWork = 1 << 16;
  sched::ThreadPool& pool = sched::global_pool();
  if (pool.size() == 1 || w.n_out * w.n_in * n_tokens < kMinParallelWork || w.n_out < 32) {
    cpu::gemm_rows(w.type, w.data, w.n_in, impl_->act, y, w.n_out, 0, w.n_out);
    return;
  }
  cpu::check_gemm_rows(w.type, w.n_in, impl_->act, w.n_out, 0, w.n_out);
  const cpu::ActivationBuffer& act = impl_->act;
  pool.parallel_for(w.n_out, 16, [&](int64_t begin, int64_t end, int) {
    cpu::gemm_rows(w.type, w.data, w.n_in, act, y, w.n_out, begin, end);
  });
}

void LinearExec::get_row(const Weight& w, int64_t row, float* out) {
  cpu::dequantize_row(w.type, w.data + static_cast<uint64_t>(row) * w.row_bytes, out, w.n_in);
}

}  // namespace moetier::models
