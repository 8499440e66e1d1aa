// Expert FFN kernels (kernels/ffn_kernels.hpp). Block layouts follow ggml-common.h byte for byte (the
// same layouts cpu/quant_blocks.hpp documents; kernels/ may not include cpu/, so offsets are spelled out
// here). Multi-byte fields are read byte-wise: blocks of 17 / 34 / 210 bytes are not word aligned.
//
// GEMV scheme: one warp per output row; lane l decodes the 32-value chunks l, l + 32, ... of the row into
// registers and multiplies each with up to 8 tokens' x; the warp reduces with shuffles.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "common/error.hpp"
#include "kernels/cuda_check.hpp"
#include "kernels/ffn_kernels.hpp"

namespace moetier::gpu {

namespace {

constexpr int kChunk = 32;         // values decoded per lane step
constexpr int kMaxTokens = 8;      // tokens per GEMV launch
constexpr int kWarpsPerBlock = 4;  // rows per thread block

// Decoders are host + device functions so that the CPU can check them against cpu::dequantize_row
// (decode_row_on_host) on machines without a GPU.
#define MT_HD __host__ __device__
#ifdef __CUDA_ARCH__
#define MT_UNROLL _Pragma("unroll")
#else
#define MT_UNROLL
#endif

MT_HD inline float as_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

MT_HD inline uint32_t ld16(const uint8_t* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 8); }
MT_HD inline float fp16(const uint8_t* p) { return __half2float(__ushort_as_half(uint16_t(ld16(p)))); }

// Q4_K / Q5_K 6-bit scale and min of sub-block j (ggml's get_scale_min_k4).
MT_HD inline void scale_min_k4(int j, const uint8_t* s, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Decodes values [32c, 32c + 32) of row `r` into v.
template <GgmlType T>
struct Chunk;

template <>
struct Chunk<GgmlType::F32> {
  MT_HD static void decode(const uint8_t* r, int64_t c, float v[kChunk]) {
    const float4* p = reinterpret_cast<const float4*>(r) + c * 8;
MT_UNROLL
    for (int k = 0; k < 8; ++k) {
      const float4 a = p[k];
      v[4 * k] = a.x, v[4 * k + 1] = a.y, v[4 * k + 2] = a.z, v[4 * k + 3] = a.w;
    }
  }
};

template <bool kBf16>
MT_HD inline void decode_halves(const uint8_t* r, int64_t c, float v[kChunk]) {
  const uint4* p = reinterpret_cast<const uint4*>(r + c * 64);
MT_UNROLL
  for (int k = 0; k < 4; ++k) {
    const uint4 a = p[k];
    const uint32_t w[4] = {a.x, a.y, a.z, a.w};
MT_UNROLL
    for (int h = 0; h < 4; ++h) {
      const uint16_t lo = uint16_t(w[h] & 0xFFFF), hi = uint16_t(w[h] >> 16);
      if (kBf16) {
        v[8 * k + 2 * h] = as_float(uint32_t(lo) << 16);
        v[8 * k + 2 * h + 1] = as_float(uint32_t(hi) << 16);
      } else {
        v[8 * k + 2 * h] = __half2float(__ushort_as_half(lo));
        v[8 * k + 2 * h + 1] = __half2float(__ushort_as_half(hi));
      }
    }
  }
}

template <>
struct Chunk<GgmlType::F16> {
  MT_HD static void decode(const uint8_t* r, int64_t c, float v[kChunk]) { decode_halves<false>(r, c, v); }
};

template <>
struct Chunk<GgmlType::BF16> {
  MT_HD static void decode(const uint8_t* r, int64_t c, float v[kChunk]) { decode_halves<true>(r, c, v); }
};

// Q8_0 (34 bytes): fp16 d, int8 qs[32]; x = d * q.
template <>
struct Chunk<GgmlType::Q8_0> {
  MT_HD static void decode(const uint8_t* r, int64_t c, float v[kChunk]) {
    const uint8_t* b = r + c * 34;
    const float d = fp16(b);
MT_UNROLL
    for (int i = 0; i < 32; ++i) v[i] = d * float(static_cast<int8_t>(b[2 + i]));
  }
};

// Q4_0 (18 bytes): fp16 d, qs[16]; Q4_1 (20): fp16 d, fp16 m, qs[16]; Q5_0 (22): fp16 d, qh[4], qs[16];
// Q5_1 (24): fp16 d, fp16 m, qh[4], qs[16]. Value j < 16: low nibble of qs[j], j + 16: high nibble of
// qs[j]; the 5th bit of value j is bit j of qh (little-endian u32). x = d * (q - 8) (Q4_0), d * (q - 16) (Q5_0),
// d * q + m (Q4_1, Q5_1).
template <int kBytes, bool kMin, bool kHigh>
MT_HD inline void decode_q4q5(const uint8_t* r, int64_t c, float v[kChunk]) {
  const uint8_t* b = r + c * kBytes;
  const float d = fp16(b);
  const float m = kMin ? fp16(b + 2) : 0.0f;
  const uint8_t* p = b + (kMin ? 4 : 2);
  const uint32_t qh = kHigh ? (uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24)) : 0u;
  const uint8_t* qs = p + (kHigh ? 4 : 0);
  const int offset = kMin ? 0 : (kHigh ? 16 : 8);
MT_UNROLL
  for (int j = 0; j < 16; ++j) {
    int lo = qs[j] & 0xF, hi = qs[j] >> 4;
    if (kHigh) {
      lo |= int((qh >> j) & 1) << 4;
      hi |= int((qh >> (j + 16)) & 1) << 4;
    }
    v[j] = kMin ? d * float(lo) + m : d * float(lo - offset);
    v[j + 16] = kMin ? d * float(hi) + m : d * float(hi - offset);
  }
}

template <>
struct Chunk<GgmlType::Q4_0> {
  MT_HD static void decode(const uint8_t* r, int64_t c, float v[kChunk]) { decode_q4q5<18, false, false>(r, c, v); }
};
template <>
struct Chunk<GgmlType::Q4_1> {
  MT_HD static void decode(const uint8_t* r, int64_t c, float v[kChunk]) { decode_q4q5<20, true, false>(r, c, v); }
};
template <>
struct Chunk<GgmlType::Q5_0> {
  MT_HD static void decode(const uint8_t* r, int64_t c, float v[kChunk]) { decode_q4q5<22, false, true>(r, c, v); }
};
template <>
struct Chunk<GgmlType::Q5_1> {
  MT_HD static void decode(const uint8_t* r, int64_t c, float v[kChunk]) { decode_q4q5<24, true, true>(r, c, v); }
};

// MXFP4 (17 bytes): e8m0 e, qs[16]; code j: low nibble of qs[j], code j + 16: high nibble;
// x = 2^(e - 128) * doubled_e2m1[code] (ggml's e8m0_to_fp32_half and kvalues_mxfp4).
template <>
struct Chunk<GgmlType::MXFP4> {
  MT_HD static void decode(const uint8_t* r, int64_t c, float v[kChunk]) {
    constexpr int8_t kValues[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    const uint8_t* b = r + c * 17;
    const uint32_t e = b[0];
    const float s = as_float(e < 2 ? (0x00200000u << e) : ((e - 1) << 23));
MT_UNROLL
    for (int j = 0; j < 16; ++j) {
      v[j] = s * float(kValues[b[1 + j] & 0xF]);
      v[j + 16] = s * float(kValues[b[1 + j] >> 4]);
    }
  }
};

// Q4_K (144 bytes): fp16 d, fp16 dmin, scales[12], qs[128]. Sub-block j (32 values) = chunk c % 8:
// value l is nibble (j & 1 ? high : low) of qs[32 (j / 2) + l]; x = d * sc * q - dmin * m.
// Q5_K (176 bytes): the same with qh[32] before qs; bit j of qh[l] is the 5th bit.
template <bool kQ5>
MT_HD inline void decode_q45_k(const uint8_t* r, int64_t c, float v[kChunk]) {
  const uint8_t* b = r + (c / 8) * (kQ5 ? 176 : 144);
  const int j = int(c % 8);
  const float d = fp16(b), dmin = fp16(b + 2);
  int sc, m;
  scale_min_k4(j, b + 4, sc, m);
  const float dl = d * float(sc), ml = dmin * float(m);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + (kQ5 ? 48 : 16) + 32 * (j / 2);
  const int shift = (j & 1) * 4;
MT_UNROLL
  for (int l = 0; l < 32; ++l) {
    int q = (qs[l] >> shift) & 0xF;
    if (kQ5) q |= ((qh[l] >> j) & 1) << 4;
    v[l] = dl * float(q) - ml;
  }
}

template <>
struct Chunk<GgmlType::Q4_K> {
  MT_HD static void decode(const uint8_t* r, int64_t c, float v[kChunk]) { decode_q45_k<false>(r, c, v); }
};

template <>
struct Chunk<GgmlType::Q5_K> {
  MT_HD static void decode(const uint8_t* r, int64_t c, float v[kChunk]) { decode_q45_k<true>(r, c, v); }
};

// Q6_K (210 bytes): ql[128], qh[64], int8 scales[16], fp16 d. Chunk j = c % 8 = 4h + s covers values
// 128h + 32s + l: low 4 bits from ql[64h + 32 (s & 1) + l] (s >= 2: high nibble), high 2 bits are bits
// 2s, 2s+1 of qh[32h + l]; x = d * scales[8h + 2s + l / 16] * (q - 32).
template <>
struct Chunk<GgmlType::Q6_K> {
  MT_HD static void decode(const uint8_t* r, int64_t c, float v[kChunk]) {
    const uint8_t* b = r + (c / 8) * 210;
    const int j = int(c % 8), h = j / 4, s = j % 4;
    const uint8_t* ql = b + 64 * h + 32 * (s & 1);
    const uint8_t* qh = b + 128 + 32 * h;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * h + 2 * s;
    const float d = fp16(b + 208);
    const float d0 = d * float(sc[0]), d1 = d * float(sc[1]);
    const int lshift = s >= 2 ? 4 : 0;
MT_UNROLL
    for (int l = 0; l < 32; ++l) {
      const int q = (((ql[l] >> lshift) & 0xF) | (((qh[l] >> (2 * s)) & 3) << 4)) - 32;
      v[l] = (l < 16 ? d0 : d1) * float(q);
    }
  }
};

template <GgmlType T>
__global__ void gemv_kernel(const uint8_t* __restrict__ w, uint64_t row_bytes, int64_t n_out, int64_t n_in,
                            const float* __restrict__ x, int nt, float* __restrict__ y,
                            const float* __restrict__ bias) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + warp;
  if (row >= n_out) return;  // the whole warp leaves together
  const uint8_t* wr = w + row * row_bytes;
  const int64_t n_chunks = n_in / kChunk;
  float acc[kMaxTokens];
#pragma unroll
  for (int t = 0; t < kMaxTokens; ++t) acc[t] = 0.0f;
  for (int64_t c = lane; c < n_chunks; c += 32) {
    float v[kChunk];
    Chunk<T>::decode(wr, c, v);
#pragma unroll
    for (int t = 0; t < kMaxTokens; ++t) {
      if (t < nt) {
        const float4* xp = reinterpret_cast<const float4*>(x + t * n_in + c * kChunk);
        float s = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const float4 a = xp[k];
          s += v[4 * k] * a.x + v[4 * k + 1] * a.y + v[4 * k + 2] * a.z + v[4 * k + 3] * a.w;
        }
        acc[t] += s;
      }
    }
  }
#pragma unroll
  for (int t = 0; t < kMaxTokens; ++t) {
    if (t < nt) {
      float s = acc[t];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, o);
      if (lane == 0) y[t * n_out + row] = s + (bias ? bias[row] : 0.0f);
    }
  }
}

// h[i] = act(g[i] + bg[i % n_ff], u[i] + bu[i % n_ff]) over n rows of n_ff, written over g.
template <FfnActivation A>
__global__ void swiglu_kernel(float* __restrict__ g, const float* __restrict__ u, int64_t n, int64_t n_ff,
                              const float* __restrict__ bg, const float* __restrict__ bu) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t col = i % n_ff;
    float a = g[i] + (bg ? bg[col] : 0.0f);
    float b = u[i] + (bu ? bu[col] : 0.0f);
    if (A == FfnActivation::SwiGLU) {
      g[i] = a / (1.0f + expf(-a)) * b;
    } else {
      a = fminf(a, 7.0f);
      b = fminf(fmaxf(b, -7.0f), 7.0f);
      g[i] = a / (1.0f + expf(-1.702f * a)) * (b + 1.0f);
    }
  }
}

template <GgmlType T>
void launch_gemv(const DeviceWeight& w, const float* x, int64_t n_tokens, float* y, const float* bias,
                 cudaStream_t s) {
  const unsigned blocks = static_cast<unsigned>((w.n_out + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const auto* wb = reinterpret_cast<const uint8_t*>(w.data);
  for (int64_t t0 = 0; t0 < n_tokens; t0 += kMaxTokens) {
    const int nt = static_cast<int>(n_tokens - t0 < kMaxTokens ? n_tokens - t0 : kMaxTokens);
    gemv_kernel<T><<<blocks, kWarpsPerBlock * 32, 0, s>>>(wb, w.row_bytes, w.n_out, w.n_in, x + t0 * w.n_in, nt,
                                                          y + t0 * w.n_out, bias);
  }
}

std::string shape(const DeviceWeight& w) {
  return "[" + std::to_string(w.n_out) + ", " + std::to_string(w.n_in) + "]";
}

}  // namespace

namespace {
template <GgmlType T>
void decode_row(const uint8_t* r, int64_t n_in, float* out) {
  for (int64_t c = 0; c < n_in / kChunk; ++c) Chunk<T>::decode(r, c, out + c * kChunk);
}
}  // namespace

void decode_row_on_host(GgmlType type, const void* row, int64_t n_in, float* out) {
  if (auto why = gemv_declines(type, n_in)) throw Error("decode_row_on_host: " + *why);
  const auto* r = static_cast<const uint8_t*>(row);
  switch (type) {
    case GgmlType::F32: decode_row<GgmlType::F32>(r, n_in, out); break;
    case GgmlType::F16: decode_row<GgmlType::F16>(r, n_in, out); break;
    case GgmlType::BF16: decode_row<GgmlType::BF16>(r, n_in, out); break;
    case GgmlType::Q8_0: decode_row<GgmlType::Q8_0>(r, n_in, out); break;
    case GgmlType::Q4_0: decode_row<GgmlType::Q4_0>(r, n_in, out); break;
    case GgmlType::Q4_1: decode_row<GgmlType::Q4_1>(r, n_in, out); break;
    case GgmlType::Q5_0: decode_row<GgmlType::Q5_0>(r, n_in, out); break;
    case GgmlType::Q5_1: decode_row<GgmlType::Q5_1>(r, n_in, out); break;
    case GgmlType::Q4_K: decode_row<GgmlType::Q4_K>(r, n_in, out); break;
    case GgmlType::Q5_K: decode_row<GgmlType::Q5_K>(r, n_in, out); break;
    case GgmlType::Q6_K: decode_row<GgmlType::Q6_K>(r, n_in, out); break;
    case GgmlType::MXFP4: decode_row<GgmlType::MXFP4>(r, n_in, out); break;
    default: break;  // excluded by gemv_declines
  }
}

bool gemv_computes(GgmlType type) {
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q8_0: case GgmlType::Q4_K:
    case GgmlType::Q5_K: case GgmlType::Q6_K: case GgmlType::MXFP4: case GgmlType::Q4_0: case GgmlType::Q4_1:
    case GgmlType::Q5_0: case GgmlType::Q5_1:
      return true;
    default:
      return false;
  }
}

std::optional<std::string> gemv_declines(GgmlType type, int64_t n_in) {
  if (!gemv_computes(type)) return "no CUDA kernel for " + std::string(ggml_type_name(type)) + " weights";
  if (n_in < 1 || n_in % kChunk != 0)
    return "rows of " + std::to_string(n_in) + " values: the CUDA GEMV needs a positive multiple of 32";
  const uint32_t bs = ggml_type_info(type).block_size;
  if (n_in % bs != 0)
    return "rows of " + std::to_string(n_in) + " values are not whole " + std::string(ggml_type_name(type)) + " blocks";
  return std::nullopt;
}

void gemv(const DeviceWeight& w, const float* x, int64_t n_tokens, float* y, const float* bias, StreamHandle stream) {
  if (auto why = gemv_declines(w.type, w.n_in)) throw Error("CUDA GEMV " + shape(w) + ": " + *why);
  if (w.n_out < 1 || n_tokens < 1 || !w.data || !x || !y)
    throw Error("CUDA GEMV " + shape(w) + " with " + std::to_string(n_tokens) + " tokens: empty or missing operand");
  if (w.row_bytes != ggml_row_bytes(w.type, static_cast<uint64_t>(w.n_in)))
    throw Error("CUDA GEMV " + shape(w) + ": " + std::to_string(w.row_bytes) + " bytes per row, expected " +
                std::to_string(ggml_row_bytes(w.type, static_cast<uint64_t>(w.n_in))));
  auto s = static_cast<cudaStream_t>(stream);
  switch (w.type) {
    case GgmlType::F32: launch_gemv<GgmlType::F32>(w, x, n_tokens, y, bias, s); break;
    case GgmlType::F16: launch_gemv<GgmlType::F16>(w, x, n_tokens, y, bias, s); break;
    case GgmlType::BF16: launch_gemv<GgmlType::BF16>(w, x, n_tokens, y, bias, s); break;
    case GgmlType::Q8_0: launch_gemv<GgmlType::Q8_0>(w, x, n_tokens, y, bias, s); break;
    case GgmlType::Q4_K: launch_gemv<GgmlType::Q4_K>(w, x, n_tokens, y, bias, s); break;
    case GgmlType::Q5_K: launch_gemv<GgmlType::Q5_K>(w, x, n_tokens, y, bias, s); break;
    case GgmlType::Q6_K: launch_gemv<GgmlType::Q6_K>(w, x, n_tokens, y, bias, s); break;
    case GgmlType::MXFP4: launch_gemv<GgmlType::MXFP4>(w, x, n_tokens, y, bias, s); break;
    case GgmlType::Q4_0: launch_gemv<GgmlType::Q4_0>(w, x, n_tokens, y, bias, s); break;
    case GgmlType::Q4_1: launch_gemv<GgmlType::Q4_1>(w, x, n_tokens, y, bias, s); break;
    case GgmlType::Q5_0: launch_gemv<GgmlType::Q5_0>(w, x, n_tokens, y, bias, s); break;
    case GgmlType::Q5_1: launch_gemv<GgmlType::Q5_1>(w, x, n_tokens, y, bias, s); break;
    default: break;  // excluded by gemv_declines
  }
  cuda_check(cudaGetLastError(), "launching the CUDA GEMV " + std::string(ggml_type_name(w.type)) + " " + shape(w));
}

void ffn_forward(const GpuFfn& f, const float* x, int64_t n_tokens, float* y, float* work, FfnActivation act,
                 StreamHandle stream) {
  const int64_t n_ff = f.gate.n_out, n_embd = f.gate.n_in;
  if (f.up.n_out != n_ff || f.up.n_in != n_embd || f.down.n_in != n_ff || f.down.n_out != n_embd)
    throw Error("CUDA FFN: matrices do not fit each other: gate " + shape(f.gate) + ", up " + shape(f.up) +
                ", down " + shape(f.down));
  if (!work) throw Error("CUDA FFN: no workspace");
  float* g = work;
  float* u = work + n_tokens * n_ff;
  gemv(f.gate, x, n_tokens, g, nullptr, stream);
  gemv(f.up, x, n_tokens, u, nullptr, stream);
  const int64_t n = n_tokens * n_ff;
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n + threads - 1) / threads, 65535));
  auto s = static_cast<cudaStream_t>(stream);
  if (act == FfnActivation::SwiGLU)
    swiglu_kernel<FfnActivation::SwiGLU><<<blocks, threads, 0, s>>>(g, u, n, n_ff, f.gate_bias, f.up_bias);
  else
    swiglu_kernel<FfnActivation::SwiGLUClampedOss><<<blocks, threads, 0, s>>>(g, u, n, n_ff, f.gate_bias, f.up_bias);
  cuda_check(cudaGetLastError(), "launching the CUDA SwiGLU kernel");
  gemv(f.down, g, n_tokens, y, f.down_bias, stream);
}

}  // namespace moetier::gpu
