// Expert FFN kernels on a CUDA device, for weights kept in their GGUF blocks in device memory (no f16
// copy): a GEMV for 1..N tokens that dequantises each weight block in registers and accumulates in f32
// (activations stay f32: unlike ggml's CPU path, x is not quantised), a SwiGLU kernel (and gpt-oss's
// clamped variant), and the whole FFN y = down(act(gate x + bg, up x + bu)) + bd. Plain C++ API (device
// pointers, shapes, ggml types, a stream handle); definitions in ffn_kernels.cu (CUDA builds only).
//
// Every function queues work on `stream` and returns at once; launch errors throw moetier::Error, errors
// during execution surface at the next synchronisation of the stream (Event::synchronize).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/weight_view.hpp"
#include "kernels/cuda_runtime.hpp"

namespace moetier::gpu {

/// Weight types the GEMV computes: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, MXFP4.
bool gemv_computes(GgmlType type);

/// std::nullopt when gemv() takes a matrix of `type` with rows of `n_in` values; otherwise why not
/// ("no CUDA kernel for Q2_K weights", "rows of 100 values: the CUDA GEMV needs a multiple of 32").
std::optional<std::string> gemv_declines(GgmlType type, int64_t n_in);

/// The GEMV's block decoders run on the host: `row` (host memory, n_in values of `type`) -> out [n_in] f32,
/// exactly as the kernel sees the weights. For tests on machines without a GPU (compared with
/// cpu::dequantize_row). Throws moetier::Error when gemv_declines(type, n_in).
void decode_row_on_host(GgmlType type, const void* row, int64_t n_in, float* out);

/// y [n_tokens, w.n_out] f32 (device, written) = x [n_tokens, w.n_in] f32 (device, read) times W^T,
/// plus bias [w.n_out] (device, may be nullptr). W: w.n_out rows of w.row_bytes bytes at w.data (device;
/// 2-byte aligned, 16-byte aligned for F32 / F16 / BF16); x 16-byte aligned. n_tokens >= 1 (computed in
/// chunks of up to 8 tokens, each weight block read once per chunk). Throws moetier::Error when
/// gemv_declines(w.type, w.n_in) or the launch fails.
void gemv(const DeviceWeight& w, const float* x, int64_t n_tokens, float* y, const float* bias, StreamHandle stream);

/// The FFN's activation (scheduler::FfnAct without the scheduler type).
enum class FfnActivation : uint8_t {
  SwiGLU,            ///< silu(g) * u
  SwiGLUClampedOss,  ///< gpt-oss: a = min(g, 7), b = clamp(u, -7, 7), a * sigmoid(1.702 a) * (b + 1)
};

/// One FFN in device memory; biases are device f32 vectors or nullptr.
struct GpuFfn {
  DeviceWeight gate, up, down;       // [n_ff, n_embd], [n_ff, n_embd], [n_embd, n_ff]
  const float* gate_bias = nullptr;  // [n_ff]
  const float* up_bias = nullptr;    // [n_ff]
  const float* down_bias = nullptr;  // [n_embd]
};

/// f32 values of device workspace ffn_forward needs: 2 * n_tokens * n_ff.
inline uint64_t ffn_workspace_floats(int64_t n_tokens, int64_t n_ff) {
  return 2 * static_cast<uint64_t>(n_tokens) * static_cast<uint64_t>(n_ff);
}

/// y [n_tokens, n_embd] (device, written) = FFN f of x [n_tokens, n_embd] (device, read), using `work`
/// (device, ffn_workspace_floats(n_tokens, n_ff) floats, 16-byte aligned). Shapes must fit each other
/// (checked: moetier::Error), as must gemv_declines for each matrix.
void ffn_forward(const GpuFfn& f, const float* x, int64_t n_tokens, float* y, float* work, FfnActivation act,
                 StreamHandle stream);

}  // namespace moetier::gpu
