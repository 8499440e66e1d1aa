// vec_dot_scalar of every weight type against "dequantise both sides, dot in double", within a bound
// derived from the canonical f32 evaluation order (vec_dot.hpp).
#include <doctest/doctest.h>

#include <cfloat>
#include <cmath>
#include <vector>

#include "common/error.hpp"
#include "common/half.hpp"
#include "cpu/act_quant.hpp"
#include "cpu/matmul.hpp"
#include "cpu/vec_dot.hpp"
#include "format_reader.hpp"

using namespace moetier;
using namespace moetier::cpu;

namespace {

const GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                           GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::MXFP4, GgmlType::Q2_K,
                           GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

// Activation element i as the kernel sees it (dequantised vec_dot_type row).
double act_value(GgmlType act_type, const void* row, int64_t i) {
  switch (act_type) {
    case GgmlType::Q8_0: {
      const auto& b = static_cast<const BlockQ8_0*>(row)[i / 32];
      return double(fp16_to_f32(b.d)) * b.qs[i % 32];
    }
    case GgmlType::Q8_1: {
      const auto& b = static_cast<const BlockQ8_1*>(row)[i / 32];
      return double(fp16_to_f32(b.d)) * b.qs[i % 32];
    }
    case GgmlType::Q8_K: {
      const auto& b = static_cast<const BlockQ8_K*>(row)[i / 256];
      return double(b.d) * b.qs[i % 256];
    }
    default: return static_cast<const float*>(row)[i];
  }
}

}  // namespace

TEST_CASE("vec_dot_scalar matches dequantise-then-dot for every weight type and awkward lengths") {
  std::mt19937 rng(99);
  for (GgmlType t : kTypes) {
    const int64_t bs = matmul_block_size(t);
    for (int64_t nblocks : {1, 2, 7, 29}) {
      const int64_t n = bs == 1 ? nblocks * 5 + 1 : bs * nblocks;  // float types: lengths not multiple of 16
      std::vector<uint8_t> w(ggml_row_bytes(t, static_cast<uint64_t>(n)));
      test::randomize_row(t, w.data(), n, rng);
      const auto x = test::gaussian(n, static_cast<uint32_t>(n + 7));
      ActivationBuffer act;
      quantize_activations(t, x.data(), 1, n, act);
      const float got = vec_dot_scalar(t, w.data(), act.row(0), n);
      // Exact value of the same quantities and the magnitude that scales its rounding error.
      double exact = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        const auto e = test::read_element(t, w.data(), i);
        const double a = act_value(act.type(), act.row(0), i);
        exact += double(e.value) * a;
        mag += (e.scale_level + e.min) * std::fabs(a);
      }
      // Error sources, each a relative eps = 2^-24 of a term bounded by `mag`: the dequantised weight's own
      // rounding (2 eps), the per-block product chain (3 eps), the sequential sum over blocks (n_terms eps)
      // with n_terms = blocks, or n/16 + 4 for the 16-lane float order.
      const double n_terms = bs == 1 ? double(n) / 16 + 4 : double(n / bs);
      double bound = (n_terms + 6) * std::ldexp(mag, -24);
      if (vec_dot_type_for(t) == GgmlType::Q8_1) {
        // The activation block sum s = fp16(d * sum q) carries its own fp16 rounding (2^-11 relative).
        const auto* a = static_cast<const BlockQ8_1*>(act.row(0));
        for (int64_t b = 0; b < n / 32; ++b) {
          const double m = test::read_element(t, w.data(), 32 * b).min;
          double s = 0;
          for (int j = 0; j < 32; ++j) s += double(fp16_to_f32(a[b].d)) * a[b].qs[j];
          bound += m * (std::fabs(s) * std::ldexp(1.0, -10) + std::fabs(s - fp16_to_f32(a[b].s)) + 1e-30);
        }
      }
      INFO(ggml_type_name(t), " n=", n, " got ", got, " exact ", exact, " bound ", bound);
      CHECK(std::fabs(double(got) - exact) <= bound);
    }
  }
}

TEST_CASE("vec_dot_type_for follows ggml's type_traits_cpu pairs") {
  CHECK(vec_dot_type_for(GgmlType::Q4_0) == GgmlType::Q8_0);
  CHECK(vec_dot_type_for(GgmlType::Q5_0) == GgmlType::Q8_0);
  CHECK(vec_dot_type_for(GgmlType::MXFP4) == GgmlType::Q8_0);
  CHECK(vec_dot_type_for(GgmlType::Q8_0) == GgmlType::Q8_0);
  CHECK(vec_dot_type_for(GgmlType::Q4_1) == GgmlType::Q8_1);
  CHECK(vec_dot_type_for(GgmlType::Q5_1) == GgmlType::Q8_1);
  for (GgmlType t : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K})
    CHECK(vec_dot_type_for(t) == GgmlType::Q8_K);
  CHECK(vec_dot_type_for(GgmlType::F16) == GgmlType::F16);
  CHECK(vec_dot_type_for(GgmlType::BF16) == GgmlType::BF16);
  CHECK(vec_dot_type_for(GgmlType::F32) == GgmlType::F32);
  CHECK_THROWS_AS(vec_dot_type_for(GgmlType::TQ1_0), Error);
  CHECK_FALSE(can_matmul(GgmlType::Q8_K));
}

TEST_CASE("vec_dot_scalar: K-quant integer sums reach their extremes without overflow") {
  // Largest levels and scales everywhere, activations all at +127: the int32 partial sums stay exact.
  BlockQ6_K w{};
  for (auto& b : w.ql) b = 0xFF;
  for (auto& b : w.qh) b = 0xFF;  // level 63 - 32 = 31
  for (auto& s : w.scales) s = -128;
  w.d = f32_to_fp16(1.0f);
  BlockQ8_K a{};
  a.d = 1.0f;
  for (auto& q : a.qs) q = 127;
  for (auto& s : a.bsums) s = 127 * 16;
  const double want = 256.0 * 31 * -128 * 127;
  CHECK(vec_dot_scalar(GgmlType::Q6_K, &w, &a, 256) == static_cast<float>(want));
}
