#include "runtime/models/linear.hpp"

#include <vector>

#include "cpu/dequant.hpp"

namespace moetier::models {

struct LinearExec::Impl {
  std::vector<float> row;
};

LinearExec::LinearExec() : impl_(std::make_unique<Impl>()) {}
LinearExec::~LinearExec() = default;

void LinearExec::operator()(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  // TEMPORARY reference path: dequantise each weight row, f32 dot. Replaced by cpu::gemm_rows.
  impl_->row.resize(static_cast<size_t>(w.n_in));
  for (int64_t o = 0; o < w.n_out; ++o) {
    cpu::dequantize_row(w.type, w.data + static_cast<uint64_t>(o) * w.row_bytes, impl_->row.data(), w.n_in);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * w.n_in;
      float s = 0;
      for (int64_t i = 0; i < w.n_in; ++i) s += impl_->row[i] * xt[i];
      y[t * w.n_out + o] = s;
    }
  }
}

void LinearExec::get_row(const Weight& w, int64_t row, float* out) {
  cpu::dequantize_row(w.type, w.data + static_cast<uint64_t>(row) * w.row_bytes, out, w.n_in);
}

}  // namespace moetier::models
