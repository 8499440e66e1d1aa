// quantize_activations / gemm_rows / matmul / get_row (see matmul.hpp).
#include "cpu/matmul.hpp"

#include <algorithm>
#include <cstring>

#include "common/error.hpp"
#include "cpu/act_quant.hpp"
#include "cpu/amx_gemm.hpp"
#include "cpu/dequant.hpp"
#include "cpu/kernel_registry.hpp"

namespace moetier::cpu {
namespace {

bool is_float_type(GgmlType t) { return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16; }

size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

size_t stride_for(GgmlType type, int64_t n_in) {
  if (is_float_type(type)) return round_up(static_cast<size_t>(n_in), 16) * sizeof(float);
  return round_up(ggml_row_bytes(type, static_cast<uint64_t>(n_in)), 64);
}

void check_shape(GgmlType weight_type, int64_t n_tokens, int64_t n_in, const char* what) {
  if (!can_matmul(weight_type)) fail("{}: weight type {} has no CPU matmul", what, ggml_type_name(weight_type));
  if (n_tokens < 0 || n_in < 0) fail("{}: negative shape (n_tokens {}, n_in {})", what, n_tokens, n_in);
  const int64_t bs = matmul_block_size(weight_type);
  if (n_in % bs != 0)
    fail("{}: n_in {} is not a multiple of the {} block size {}", what, n_in, ggml_type_name(weight_type), bs);
}

}  // namespace

void ActivationBuffer::reserve(GgmlType type, int64_t n_tokens, int64_t n_in) {
  const size_t stride = stride_for(type, n_in);
  const size_t bytes = stride * static_cast<size_t>(std::max<int64_t>(n_tokens, 0));
  if (bytes > data_.size()) data_ = AlignedBuffer(bytes, 64);
  type_ = type;
  n_tokens_ = n_tokens;
  n_in_ = n_in;
  row_stride_ = stride;
}

void prepare_activations(GgmlType weight_type, int64_t n_tokens, int64_t n_in, ActivationBuffer& act,
                         F32Path f32_path) {
  check_shape(weight_type, n_tokens, n_in, "quantize_activations");
  act.reserve(vec_dot_type_for(weight_type), n_tokens, n_in);
  act.f32_path_ = f32_path;
}

void quantize_activation_rows(const float* x, int64_t t_begin, int64_t t_end, ActivationBuffer& act) {
  const GgmlType type = act.type();
  const int64_t n_in = act.n_in();
  if (t_begin < 0 || t_begin > t_end || t_end > act.n_tokens())
    fail("quantize_activation_rows: rows [{}, {}) are not within the {} prepared", t_begin, t_end, act.n_tokens());
  for (int64_t t = t_begin; t < t_end; ++t) {
    const float* xt = x + t * n_in;
    void* dst = act.mutable_row(t);
    switch (type) {
      case GgmlType::Q8_0: quantize_row_q8_0(xt, static_cast<BlockQ8_0*>(dst), n_in); break;
      case GgmlType::Q8_1: quantize_row_q8_1(xt, static_cast<BlockQ8_1*>(dst), n_in); break;
      case GgmlType::Q8_K: quantize_row_q8_K(xt, static_cast<BlockQ8_K*>(dst), n_in); break;
      default: {
        auto* f = static_cast<float*>(dst);
        if (type == GgmlType::F16)
          round_row_to_f16(xt, f, n_in);
        else if (type == GgmlType::BF16)
          round_row_to_bf16(xt, f, n_in);
        else
          std::memcpy(f, xt, static_cast<size_t>(n_in) * sizeof(float));
        const size_t padded = act.row_stride() / sizeof(float);
        std::fill(f + n_in, f + padded, 0.0f);  // kernels read whole 16-lane chunks
      }
    }
  }
}

void quantize_activations(GgmlType weight_type, const float* x, int64_t n_tokens, int64_t n_in,
                          ActivationBuffer& act, F32Path f32_path) {
  prepare_activations(weight_type, n_tokens, n_in, act, f32_path);
  quantize_activation_rows(x, 0, n_tokens, act);
}

void check_gemm_rows(GgmlType weight_type, int64_t n_in, const ActivationBuffer& act, int64_t n_out,
                     int64_t row_begin, int64_t row_end) {
  check_shape(weight_type, act.n_tokens(), n_in, "gemm_rows");
  const GgmlType want = vec_dot_type_for(weight_type);
  if (act.type() != want || act.n_in() != n_in)
    fail("gemm_rows: activations are {} x {} of {}, weight {} with n_in {} needs {}", act.n_tokens(), act.n_in(),
         ggml_type_name(act.type()), ggml_type_name(weight_type), n_in, ggml_type_name(want));
  if (row_begin < 0 || row_begin > row_end || row_end > n_out)
    fail("gemm_rows: row range [{}, {}) is not within [0, {})", row_begin, row_end, n_out);
}

bool gemm_rows_uses_amx(GgmlType weight_type, int64_t n_tokens) {
  return n_tokens >= kAmxMinTokens && amx_gemm_supports(weight_type) && best_isa(cpu_features()) >= Isa::kAmx;
}

void gemm_rows_isa(Isa max_isa, GgmlType weight_type, const void* w, int64_t n_in, const ActivationBuffer& act,
                   float* y, int64_t n_out, int64_t row_begin, int64_t row_end) {
  check_gemm_rows(weight_type, n_in, act, n_out, row_begin, row_end);
  max_isa = std::min(max_isa, best_isa(cpu_features()));
  if (row_begin == row_end || act.n_tokens() == 0) return;
  if (weight_type == GgmlType::F32) {  // ggml's own F32 orders (ggml_math.hpp), for every ISA
    const F32DotOrder order = act.f32_path() == F32Path::kVecDot
                                  ? F32DotOrder::kVecDot
                                  : ggml_mul_mat_f32_order(act.n_tokens(), n_in, n_out);
    ggml_gemm_f32_rows(order, static_cast<const float*>(w), n_in, static_cast<const float*>(act.row(0)),
                       act.row_stride() / sizeof(float), act.n_tokens(), y, n_out, row_begin, row_end);
    return;
  }
  if (max_isa >= Isa::kAmx && gemm_rows_uses_amx(weight_type, act.n_tokens())) {
    amx_gemm_rows(weight_type, w, n_in, act, y, n_out, row_begin, row_end);
    return;
  }
  GemvArgs a{};
  a.w = static_cast<const std::byte*>(w);
  a.w_row_bytes = ggml_row_bytes(weight_type, static_cast<uint64_t>(n_in));
  a.n_in = n_in;
  a.act_stride = act.row_stride();
  a.ldy = n_out;
  a.row_begin = row_begin;
  a.row_end = row_end;
  for (int64_t t0 = 0; t0 < act.n_tokens(); t0 += kMaxKernelTokens) {
    a.n_tokens = static_cast<int>(std::min<int64_t>(kMaxKernelTokens, act.n_tokens() - t0));
    a.act = static_cast<const std::byte*>(act.row(t0));
    a.y = y + t0 * n_out;
    select_gemv(weight_type, a.n_tokens, max_isa)->fn(a);
  }
}

void gemm_rows(GgmlType weight_type, const void* w, int64_t n_in, const ActivationBuffer& act, float* y,
               int64_t n_out, int64_t row_begin, int64_t row_end) {
  gemm_rows_isa(Isa::kAmx, weight_type, w, n_in, act, y, n_out, row_begin, row_end);
}

void matmul(GgmlType weight_type, const void* w, int64_t n_out, int64_t n_in, const float* x, int64_t n_tokens,
            float* y, ActivationBuffer& scratch) {
  quantize_activations(weight_type, x, n_tokens, n_in, scratch);
  gemm_rows(weight_type, w, n_in, scratch, y, n_out, 0, n_out);
}

void get_row(GgmlType type, const void* w, int64_t n_rows, int64_t n_in, int64_t row, float* dst) {
  if (!can_dequantize(type)) fail("get_row: type {} is not supported", ggml_type_name(type));
  if (n_in % ggml_type_info(type).block_size != 0)
    fail("get_row: n_in {} is not a multiple of the {} block size {}", n_in, ggml_type_name(type),
         ggml_type_info(type).block_size);
  if (row < 0 || row >= n_rows) fail("get_row: row {} is outside [0, {})", row, n_rows);
  const size_t row_bytes = ggml_row_bytes(type, static_cast<uint64_t>(n_in));
  dequantize_row(type, static_cast<const std::byte*>(w) + static_cast<size_t>(row) * row_bytes, dst, n_in);
}

}  // namespace moetier::cpu
