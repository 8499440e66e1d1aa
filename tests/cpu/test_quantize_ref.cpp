// Reference quantizers: exact round trips on representable data, error bounds on Gaussian data.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/error.hpp"
#include "common/half.hpp"
#include "cpu/dequant.hpp"
#include "format_reader.hpp"

using namespace moetier;
using namespace moetier::cpu;

namespace {

std::vector<float> round_trip(GgmlType t, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(ggml_row_bytes(t, static_cast<uint64_t>(n)));
  quantize_row_ref(t, x.data(), q.data(), n);
  std::vector<float> y(x.size());
  dequantize_row(t, q.data(), y.data(), n);
  return y;
}

double rms(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return std::sqrt(s / static_cast<double>(v.size()));
}

}  // namespace

TEST_CASE("quantize_row_ref: data already on the grid round-trips exactly") {
  // Each block: scale 2^-k times the format's levels (fp16-exact), arranged so the quantizer's own choice of
  // scale recovers exactly that grid.
  std::vector<float> x(64);
  SUBCASE("Q8_0: levels -127..127") {
    for (int i = 0; i < 64; ++i) x[i] = 0.0078125f * static_cast<float>((i * 37) % 255 - 127);
    x[5] = 0.0078125f * 127;  // the block's |max| sets d = max / 127
    x[40] = -0.0078125f * 127;
    CHECK(round_trip(GgmlType::Q8_0, x) == x);
  }
  SUBCASE("Q4_0: d = max / -8 with max = +8 steps") {
    for (int i = 0; i < 64; ++i) x[i] = 0.25f * static_cast<float>((i * 5) % 16 - 7);  // -7..8
    x[3] = x[33] = 0.25f * 8;
    CHECK(round_trip(GgmlType::Q4_0, x) == x);
  }
  SUBCASE("Q4_1 and Q5_1: min + d * level with both extremes present") {
    for (int levels : {15, 31}) {
      for (int i = 0; i < 64; ++i) x[i] = -1.5f + 0.125f * static_cast<float>((i * 7) % (levels + 1));
      x[0] = x[32] = -1.5f;
      x[1] = x[33] = -1.5f + 0.125f * static_cast<float>(levels);
      CHECK(round_trip(levels == 15 ? GgmlType::Q4_1 : GgmlType::Q5_1, x) == x);
    }
  }
  SUBCASE("Q5_0: levels -15..16") {
    for (int i = 0; i < 64; ++i) x[i] = 0.5f * static_cast<float>((i * 3) % 32 - 15);
    x[7] = x[39] = 0.5f * 16;
    CHECK(round_trip(GgmlType::Q5_0, x) == x);
  }
  SUBCASE("MXFP4: e2m1 values times a power of two, max 6 * 2^k") {
    for (int i = 0; i < 64; ++i) x[i] = static_cast<float>(test::e2m1_value(i % 16) * 0.5);
    x[6] = x[38] = 3.0f;  // 6 * 0.5: e = floor(log2 3) - 2 + 127 -> scale 0.5
    CHECK(round_trip(GgmlType::MXFP4, x) == x);
  }
  SUBCASE("F16 / BF16 values") {
    for (int i = 0; i < 64; ++i) x[i] = static_cast<float>(i - 30) * 0.375f;
    CHECK(round_trip(GgmlType::F16, x) == x);
    CHECK(round_trip(GgmlType::BF16, x) == x);
  }
}

TEST_CASE("quantize_row_ref: relative RMS error on Gaussian rows is what the bit width allows") {
  // For a uniform grid of step D the rounding error is at most D/2 and has RMS D/sqrt(12). With b bits over
  // a block's range R (about 2 * 2.5 sd for 32 Gaussian values) D = R / (2^b - 1); the bound allows 1.6x that
  // for scale rounding, clamped outliers and the least-squares fits.
  const auto x = test::gaussian(256 * 24, 42);
  struct Case { GgmlType t; int bits; };
  for (const Case c : {Case{GgmlType::Q8_0, 8}, Case{GgmlType::Q4_0, 4}, Case{GgmlType::Q4_1, 4}, Case{GgmlType::Q5_0, 5},
                       Case{GgmlType::Q5_1, 5}, Case{GgmlType::Q2_K, 2}, Case{GgmlType::Q3_K, 3}, Case{GgmlType::Q4_K, 4},
                       Case{GgmlType::Q5_K, 5}, Case{GgmlType::Q6_K, 6}, Case{GgmlType::MXFP4, 3}}) {
    const auto y = round_trip(c.t, x);
    std::vector<float> err(x.size());
    for (size_t i = 0; i < x.size(); ++i) err[i] = y[i] - x[i];
    const double rel = rms(err) / rms(x);
    const double step = 5.0 / ((1 << c.bits) - 1);
    INFO(ggml_type_name(c.t), " relative rms error ", rel);
    CHECK(rel < 1.6 * step / std::sqrt(12.0));
    CHECK(rel > 0.0);
  }
}

TEST_CASE("quantize_row_ref: zero rows stay zero; partial blocks are rejected") {
  const std::vector<float> zeros(512, 0.0f);
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::MXFP4,
                     GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    const auto y = round_trip(t, zeros);
    CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 0.0f; }));
  }
  std::vector<uint8_t> buf(1024);
  CHECK_THROWS_AS(quantize_row_ref(GgmlType::Q4_K, zeros.data(), buf.data(), 128), Error);
  CHECK_THROWS_AS(quantize_row_ref(GgmlType::IQ4_XS, zeros.data(), buf.data(), 256), Error);
}

TEST_CASE("K-quant reference quantizers keep every element within its sub-block's grid") {
  // Requantisation against the stored scales means each element is at most half a stored step from its
  // value unless it lies outside the sub-block's representable range; for smooth data (no outliers) that
  // cannot happen by more than the fit's clamp, so the max error is bounded by one step of the sub-block.
  const auto x = test::gaussian(256 * 8, 7, 1.0f);
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    const auto y = round_trip(t, x);
    const int levels = t == GgmlType::Q4_K ? 15 : t == GgmlType::Q5_K ? 31 : 63;
    const int sub = t == GgmlType::Q6_K ? 16 : 32;
    for (size_t s = 0; s < x.size(); s += sub) {
      const auto [lo, hi] = std::minmax_element(x.begin() + s, x.begin() + s + sub);
      const float step = (std::max(*hi, 0.0f) - std::min(*lo, 0.0f)) / static_cast<float>(levels);
      for (size_t i = s; i < s + sub; ++i) CHECK(std::fabs(y[i] - x[i]) <= 1.5f * step);
    }
  }
}
