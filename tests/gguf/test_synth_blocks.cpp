// The random blocks synth writes are valid and have the intended statistics: each format is decoded
// here with an independent reference decoder (from the layouts in ggml-common.h / cpu/quant_blocks.hpp)
// and the values must be finite with mean ~0 and standard deviation ~1/sqrt(n_in); norm weights ~1 +-0.1.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>

#include "common/half.hpp"
#include "cpu/dequant.hpp"
#include "cpu/quant_blocks.hpp"
#include "runtime/synth/synth_model.hpp"

using namespace moetier;
using namespace moetier::synth;

namespace {

template <typename B>
B block_at(const std::byte* p) {
  B b;
  std::memcpy(&b, p, sizeof(B));
  return b;
}

/// Decodes one block (or one element for float types) at p into out; returns elements written.
int decode_block(GgmlType t, const std::byte* p, float* out) {
  using namespace cpu;
  switch (t) {
    case GgmlType::F32: std::memcpy(out, p, 4); return 1;
    case GgmlType::F16: { uint16_t h; std::memcpy(&h, p, 2); out[0] = fp16_to_f32(h); return 1; }
    case GgmlType::BF16: { uint16_t h; std::memcpy(&h, p, 2); out[0] = bf16_to_f32(h); return 1; }
    case GgmlType::Q8_0: {
      const auto b = block_at<BlockQ8_0>(p);
      for (int j = 0; j < 32; ++j) out[j] = fp16_to_f32(b.d) * b.qs[j];
      return 32;
    }
    case GgmlType::Q4_0: case GgmlType::Q4_1: {
      float d, m;
      const uint8_t* qs;
      BlockQ4_0 b0;
      BlockQ4_1 b1;
      if (t == GgmlType::Q4_0) { b0 = block_at<BlockQ4_0>(p); d = fp16_to_f32(b0.d); m = -8 * d; qs = b0.qs; }
      else { b1 = block_at<BlockQ4_1>(p); d = fp16_to_f32(b1.d); m = fp16_to_f32(b1.m); qs = b1.qs; }
      for (int j = 0; j < 16; ++j) {
        out[j] = d * (qs[j] & 15) + m;
        out[j + 16] = d * (qs[j] >> 4) + m;
      }
      return 32;
    }
    case GgmlType::Q5_0: case GgmlType::Q5_1: {
      float d, m;
      uint32_t qh;
      const uint8_t* qs;
      BlockQ5_0 b0;
      BlockQ5_1 b1;
      if (t == GgmlType::Q5_0) { b0 = block_at<BlockQ5_0>(p); d = fp16_to_f32(b0.d); m = -16 * d; std::memcpy(&qh, b0.qh, 4); qs = b0.qs; }
      else { b1 = block_at<BlockQ5_1>(p); d = fp16_to_f32(b1.d); m = fp16_to_f32(b1.m); std::memcpy(&qh, b1.qh, 4); qs = b1.qs; }
      for (int j = 0; j < 16; ++j) {
        out[j] = d * static_cast<float>((qs[j] & 15) | (((qh >> j) & 1) << 4)) + m;
        out[j + 16] = d * static_cast<float>((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) + m;
      }
      return 32;
    }
    case GgmlType::Q4_K: case GgmlType::Q5_K: {
      const bool five = t == GgmlType::Q5_K;
      BlockQ4_K b4;
      BlockQ5_K b5;
      uint16_t dd, dm;
      const uint8_t *sc, *qs, *qh = nullptr;
      if (five) { b5 = block_at<BlockQ5_K>(p); dd = b5.d; dm = b5.dmin; sc = b5.scales; qs = b5.qs; qh = b5.qh; }
      else { b4 = block_at<BlockQ4_K>(p); dd = b4.d; dm = b4.dmin; sc = b4.scales; qs = b4.qs; }
      const float d = fp16_to_f32(dd), dmin = fp16_to_f32(dm);
      for (int c = 0; c < 4; ++c) {
        uint8_t s0, m0, s1, m1;
        get_scale_min_k4(2 * c, sc, s0, m0);
        get_scale_min_k4(2 * c + 1, sc, s1, m1);
        for (int l = 0; l < 32; ++l) {
          int lo = qs[32 * c + l] & 15, hi = qs[32 * c + l] >> 4;
          if (five) {
            lo |= ((qh[l] >> (2 * c)) & 1) << 4;
            hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
          }
          out[64 * c + l] = d * s0 * lo - dmin * m0;
          out[64 * c + 32 + l] = d * s1 * hi - dmin * m1;
        }
      }
      return 256;
    }
    case GgmlType::Q6_K: {
      const auto b = block_at<BlockQ6_K>(p);
      const float d = fp16_to_f32(b.d);
      for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
          const uint8_t qh = b.qh[32 * h + l];
          const int q[4] = {(b.ql[64 * h + l] & 15) | ((qh & 3) << 4), (b.ql[64 * h + 32 + l] & 15) | (((qh >> 2) & 3) << 4),
                            (b.ql[64 * h + l] >> 4) | (((qh >> 4) & 3) << 4), (b.ql[64 * h + 32 + l] >> 4) | (((qh >> 6) & 3) << 4)};
          for (int k = 0; k < 4; ++k) {
            const int i = 128 * h + 32 * k + l;
            out[i] = d * b.scales[i / 16] * static_cast<float>(q[k] - 32);
          }
        }
      return 256;
    }
    case GgmlType::MXFP4: {
      const auto b = block_at<BlockMxfp4>(p);
      const float s = std::bit_cast<float>(e8m0_to_f32_half_bits(b.e));
      for (int j = 0; j < 16; ++j) {
        out[j] = s * kMxfp4Values[b.qs[j] & 15];
        out[j + 16] = s * kMxfp4Values[b.qs[j] >> 4];
      }
      return 32;
    }
    default:
      // IQ types: cpu::dequantize_row, itself checked bit for bit against ggml (tests/cpu/test_iq_quants).
      if (is_iq_type(t)) {
        const int n = static_cast<int>(ggml_type_info(t).block_size);
        dequantize_row(t, p, out, n);
        return n;
      }
      FAIL("no decoder");
      return 0;
  }
}

struct Stats {
  double mean = 0, std = 0;
  bool finite = true;
};

Stats decode_stats(const SynthModel& m, size_t ti) {
  const SynthTensor& t = m.tensors[ti];
  std::vector<std::byte> bytes(t.n_bytes);
  m.fill_fn()(ti, 0, bytes);
  const auto& info = ggml_type_info(t.type);
  double s = 0, s2 = 0;
  size_t n = 0;
  Stats st;
  float buf[256];
  for (size_t off = 0; off < bytes.size(); off += info.type_size) {
    const int k = decode_block(t.type, bytes.data() + off, buf);
    for (int i = 0; i < k; ++i) {
      st.finite &= std::isfinite(buf[i]);
      s += buf[i];
      s2 += static_cast<double>(buf[i]) * buf[i];
      ++n;
    }
  }
  st.mean = s / static_cast<double>(n);
  st.std = std::sqrt(s2 / static_cast<double>(n) - st.mean * st.mean);
  return st;
}

size_t index_of(const SynthModel& m, const std::string& name) {
  for (size_t i = 0; i < m.tensors.size(); ++i)
    if (m.tensors[i].name == name) return i;
  FAIL("no tensor " << name);
  return 0;
}

}  // namespace

TEST_CASE("synthesized blocks decode to finite values with the intended spread") {
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1,
                        GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
                        GgmlType::MXFP4, GgmlType::IQ1_S, GgmlType::IQ1_M, GgmlType::IQ2_XXS, GgmlType::IQ2_XS,
                        GgmlType::IQ2_S, GgmlType::IQ3_XXS, GgmlType::IQ3_S, GgmlType::IQ4_NL, GgmlType::IQ4_XS}) {
    CAPTURE(ggml_type_name(type));
    const SynthModel m = build_synth_model({"tiny-mixtral", type, "", 5});
    // ffn_down_exps rows are 256 wide: every type, K-quants included, is used as asked.
    const size_t ti = index_of(m, "blk.1.ffn_down_exps.weight");
    REQUIRE(m.tensors[ti].type == type);
    const Stats st = decode_stats(m, ti);
    const double target = 1.0 / std::sqrt(256.0);
    CHECK(st.finite);
    CHECK(st.std > 0.5 * target);
    CHECK(st.std < 2.0 * target);
    CHECK(std::fabs(st.mean) < 0.25 * target);
  }
}

TEST_CASE("norm weights are 1 + 0.1 N(0,1) in F32; routers stay F32") {
  const SynthModel m = build_synth_model({"tiny-qwen3moe", GgmlType::Q4_K, "", 11});
  const size_t ti = index_of(m, "blk.0.attn_norm.weight");
  CHECK(m.tensors[ti].type == GgmlType::F32);
  const Stats st = decode_stats(m, ti);
  CHECK(st.mean == doctest::Approx(1.0).epsilon(0.05));
  CHECK(st.std > 0.05);
  CHECK(st.std < 0.2);
  const size_t ri = index_of(m, "blk.1.ffn_gate_inp.weight");
  CHECK(m.tensors[ri].type == GgmlType::F32);
  const Stats rs = decode_stats(m, ri);
  CHECK(rs.std == doctest::Approx(1.0 / std::sqrt(128.0)).epsilon(0.2));
}
