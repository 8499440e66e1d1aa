// Prefill GEMM (cpu/prefill_gemm.hpp): dequantised tiles x activation values through oneDNN equal ggml's
// dot-product math in double for every weight type and awkward shape, agree with ggml's dot-product path
// up to f32 summation order (a tight bound per type), do not depend on the tile-aligned row split, and
// reject bad arguments.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cmath>
#include <random>
#include <vector>

#include "common/error.hpp"
#include "common/half.hpp"
#include "cpu/cpu_features.hpp"
#include "cpu/dequant.hpp"
#include "cpu/matmul.hpp"
#include "cpu/prefill_gemm.hpp"
#include "cpu/quant_blocks.hpp"
#include "cpu/vec_dot.hpp"
#include "format_reader.hpp"

using namespace moetier;
using namespace moetier::cpu;

namespace {

const GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                           GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::MXFP4, GgmlType::Q2_K,
                           GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ2_XXS,
                           GgmlType::IQ2_XS, GgmlType::IQ2_S, GgmlType::IQ3_XXS, GgmlType::IQ3_S, GgmlType::IQ1_S,
                           GgmlType::IQ1_M, GgmlType::IQ4_NL, GgmlType::IQ4_XS};

std::vector<uint8_t> random_weights(GgmlType t, int64_t n_out, int64_t n_in, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t rb = ggml_row_bytes(t, static_cast<uint64_t>(n_in));
  std::vector<uint8_t> w(rb * static_cast<size_t>(n_out));
  for (int64_t r = 0; r < n_out; ++r) test::randomize_row(t, w.data() + r * rb, n_in, rng);
  return w;
}

/// Block mins of a Q4_1 / Q5_1 row (n / 32 values); empty for other types.
std::vector<double> block_mins(GgmlType t, const uint8_t* row, int64_t n) {
  std::vector<double> m;
  for (int64_t b = 0; b < n / 32; ++b) {
    if (t == GgmlType::Q4_1) m.push_back(fp16_to_f32(reinterpret_cast<const BlockQ4_1*>(row)[b].m));
    if (t == GgmlType::Q5_1) m.push_back(fp16_to_f32(reinterpret_cast<const BlockQ5_1*>(row)[b].m));
  }
  return m;
}

/// ggml's vec_dot of one weight row with one prepared activation row, in double: sum_i w_i x_i over the
/// dequantised weights w (d q + m) and the activation values x; for Q4_1 / Q5_1 the min term uses the Q8_1
/// block sum s (xv[n + b]) in place of sum x, as ggml's dot does: + sum_b m_b (s_b - sum_{i in b} x_i).
/// Returns the value and, in *mag, sum |terms| (the scale of f32 rounding errors).
double ggml_dot_in_double(GgmlType t, const uint8_t* row, const float* w, const float* xv, int64_t n, double* mag) {
  double dot = 0;
  *mag = 0;
  for (int64_t i = 0; i < n; ++i) {
    dot += double(w[i]) * xv[i];
    *mag += std::fabs(double(w[i]) * xv[i]);
  }
  const auto mins = block_mins(t, row, n);
  for (size_t b = 0; b < mins.size(); ++b) {
    double sum = 0;
    for (int64_t i = 32 * static_cast<int64_t>(b); i < 32 * static_cast<int64_t>(b) + 32; ++i) sum += xv[i];
    dot += mins[b] * (xv[n + static_cast<int64_t>(b)] - sum);
    *mag += std::fabs(mins[b] * xv[n + static_cast<int64_t>(b)]);
  }
  return dot;
}

}  // namespace

TEST_CASE("prefill GEMM: every type and awkward shape equals ggml's dot product in double") {
  PrefillGemmWorker worker;
  for (GgmlType t : kTypes) {
    REQUIRE(prefill_gemm_supports(t));
    const int64_t bs = matmul_block_size(t) == 1 ? 16 : matmul_block_size(t);
    struct Shape { int64_t n_out, n_in, m; };
    // A single block and token; a tile plus a 2-row tail with 33 tokens; two tiles and a tail of 1.
    const Shape shapes[] = {{1, bs, 1}, {kPrefillTileRows + 2, bs * 3, 33}, {2 * kPrefillTileRows + 1, bs * 2, 5}};
    for (const auto& s : shapes) {
      INFO(ggml_type_name(t), " ", s.n_out, "x", s.n_in, " tokens ", s.m);
      const auto w = random_weights(t, s.n_out, s.n_in, static_cast<uint32_t>(s.n_out + s.n_in));
      const auto x = test::gaussian(s.m * s.n_in, 5);
      ActivationBuffer act;
      quantize_activations(t, x.data(), s.m, s.n_in, act, F32Path::kVecDot);
      const int64_t k = prefill_gemm_columns(t, s.n_in);
      std::vector<float> xv(static_cast<size_t>(s.m * k));
      activation_values(act, xv.data());
      std::vector<float> y(static_cast<size_t>(s.m * s.n_out), NAN), ydot(y.size(), NAN);
      worker.rows(t, w.data(), s.n_in, xv.data(), s.m, y.data(), s.n_out, 0, s.n_out);
      gemm_rows(t, w.data(), s.n_in, act, ydot.data(), s.n_out, 0, s.n_out);
      const size_t rb = ggml_row_bytes(t, static_cast<uint64_t>(s.n_in));
      std::vector<float> wr(static_cast<size_t>(s.n_in));
      int bad = 0, bad_dot = 0;
      for (int64_t r = 0; r < s.n_out; ++r) {
        dequantize_row(t, w.data() + r * rb, wr.data(), s.n_in);
        for (int64_t tok = 0; tok < s.m; ++tok) {
          double mag = 0;
          const double exact = ggml_dot_in_double(t, w.data() + r * rb, wr.data(), xv.data() + tok * k, s.n_in, &mag);
          const double got = y[tok * s.n_out + r];
          bad += !(std::fabs(got - exact) <= 1e-5 * mag + 1e-7);
          // ggml's path multiplies the same numbers in another order.
          bad_dot += !(std::fabs(got - ydot[tok * s.n_out + r]) <= 1e-5 * mag + 1e-7);
        }
      }
      CHECK(bad == 0);
      CHECK(bad_dot == 0);
    }
  }
}

TEST_CASE("prefill GEMM vs ggml's dot-product path on the same rows: f32 rounding, per weight type") {
  // Model-like weights (Gaussian rows quantised by quantize_row_ref; Q4_1 / Q5_1 then have mins ~ -max |w|)
  // and activations; 300 output rows (tiles of 128 and a tail), 1024 inputs, 40 tokens (an expert's
  // prompt batch). err = max |GEMM - dot| / max |dot| over all outputs. Every type multiplies the same
  // numbers as ggml's dot, so one bound fits all: 5e-6, ~3x the largest err measured over 8 seeds (Q4_1 /
  // Q5_1 1.6e-6, where d_w d_x sum(q_w q_x) and m_w s_x cancel; the others <= 1.3e-6). Multiplying
  // d_w q_w + m_w by d_x q_x (the old tiles, without Q8_1's stored block sum s) gave err ~2e-4 there.
  const double bound = 5e-6;
  for (uint32_t id = 0; id < 64; ++id)  // kTypes is every type the GEMM takes
    if (ggml_type_info(id) && prefill_gemm_supports(static_cast<GgmlType>(id)))
      CHECK(std::find(std::begin(kTypes), std::end(kTypes), static_cast<GgmlType>(id)) != std::end(kTypes));
  const int64_t n_out = 300, n_in = 1024, m = 40;
  PrefillGemmWorker worker;
  for (GgmlType t : kTypes) {
    const size_t rb = ggml_row_bytes(t, static_cast<uint64_t>(n_in));
    std::vector<uint8_t> w(rb * n_out);
    const auto wf = test::gaussian(n_out * n_in, 31);
    std::mt19937 rng(33);  // IQ types have no reference quantizer: random valid blocks
    for (int64_t r = 0; r < n_out; ++r)
      if (can_quantize(t))
        quantize_row_ref(t, wf.data() + r * n_in, w.data() + r * rb, n_in);
      else
        test::randomize_row(t, w.data() + r * rb, n_in, rng);
    const auto x = test::gaussian(m * n_in, 32);
    ActivationBuffer act;
    quantize_activations(t, x.data(), m, n_in, act, F32Path::kVecDot);
    std::vector<float> xv(static_cast<size_t>(m * prefill_gemm_columns(t, n_in)));
    activation_values(act, xv.data());
    std::vector<float> y(static_cast<size_t>(m * n_out), NAN), ydot(y.size(), NAN);
    worker.rows(t, w.data(), n_in, xv.data(), m, y.data(), n_out, 0, n_out);
    gemm_rows(t, w.data(), n_in, act, ydot.data(), n_out, 0, n_out);
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      max_diff = std::max(max_diff, std::fabs(double(y[i]) - ydot[i]));
      max_ref = std::max(max_ref, std::fabs(double(ydot[i])));
    }
    const double err = max_diff / max_ref;
    INFO(ggml_type_name(t), ": max |GEMM - dot| / max |dot| = ", err, " (bound ", bound, ")");
    CHECK(err <= bound);
  }
}

TEST_CASE("activation_values: the f32 numbers ggml's dot product multiplies, Q8_1 block sums after them") {
  const int64_t n = 512, m = 3;
  const auto x = test::gaussian(m * n, 9);
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q5_1,
                     GgmlType::Q4_K}) {
    const GgmlType at = vec_dot_type_for(t);
    INFO(ggml_type_name(t), " (activations ", ggml_type_name(at), ")");
    ActivationBuffer act;
    quantize_activations(t, x.data(), m, n, act, F32Path::kVecDot);
    // Q8_1 rows carry n / 32 more columns (the blocks' s); one sentinel row after the last token.
    const int64_t k = prefill_gemm_columns(t, n);
    CHECK(k == (at == GgmlType::Q8_1 ? n + n / 32 : n));
    std::vector<float> xv(static_cast<size_t>((m + 1) * k), NAN);
    activation_values(act, xv.data());
    const int64_t blk = at == GgmlType::Q8_K ? 256 : 32;
    int bad = 0, bad_s = 0;
    for (int64_t t0 = 0; t0 < m; ++t0) {
      for (int64_t b = 0; b < n; b += blk) {
        float amax = 0;
        for (int64_t i = b; i < b + blk; ++i) amax = std::max(amax, std::fabs(x[t0 * n + i]));
        for (int64_t i = b; i < b + blk; ++i) {
          const double tol = at == GgmlType::F32 ? 0.0 : at == GgmlType::F16 ? std::fabs(x[t0 * n + i]) * 1e-3 :
                             at == GgmlType::BF16 ? std::fabs(x[t0 * n + i]) * 8e-3 :
                             // half a step, plus (Q8_0 / Q8_1) the fp16 rounding of the scale times |q| <= 127
                             amax / 127.0 * 0.5001 + (at == GgmlType::Q8_K ? 1e-7 : amax * 0x1p-11);
          bad += !(std::fabs(xv[t0 * k + i] - x[t0 * n + i]) <= tol);
        }
      }
      if (at == GgmlType::Q8_1) {
        const auto* blocks = static_cast<const BlockQ8_1*>(act.row(t0));
        for (int64_t b = 0; b < n / 32; ++b) bad_s += xv[t0 * k + n + b] != fp16_to_f32(blocks[b].s);
      }
    }
    CHECK(bad == 0);
    CHECK(bad_s == 0);
    int written_past_end = 0;
    for (int64_t i = m * k; i < (m + 1) * k; ++i) written_past_end += !std::isnan(xv[i]);
    CHECK(written_past_end == 0);
  }
}

TEST_CASE("prefill GEMM: results do not depend on a tile-aligned row split; OpenMP thread count restored") {
  const GgmlType t = GgmlType::Q4_K;
  const int64_t n_out = 3 * kPrefillTileRows + 7, n_in = 512, m = 40;
  const auto w = random_weights(t, n_out, n_in, 3);
  const auto x = test::gaussian(m * n_in, 4);
  PrefillGemmWorker a, b;
  const int omp_before = omp_get_max_threads();
  std::vector<float> whole(static_cast<size_t>(m * n_out)), split(whole.size());
  a.rows(t, w.data(), n_in, x.data(), m, whole.data(), n_out, 0, n_out);
  CHECK(omp_get_max_threads() == omp_before);
  b.rows(t, w.data(), n_in, x.data(), m, split.data(), n_out, 0, kPrefillTileRows);
  a.rows(t, w.data(), n_in, x.data(), m, split.data(), n_out, kPrefillTileRows, n_out);
  int diff = 0;
  for (size_t i = 0; i < whole.size(); ++i) diff += std::bit_cast<uint32_t>(whole[i]) != std::bit_cast<uint32_t>(split[i]);
  CHECK(diff == 0);
  CHECK_FALSE(a.implementation().empty());
}

TEST_CASE("prefill GEMM: argument errors throw moetier::Error") {
  PrefillGemmWorker w;
  std::vector<uint8_t> wt(4096);
  std::vector<float> x(256), y(256);
  CHECK_THROWS_AS(w.rows(GgmlType::TQ1_0, wt.data(), 256, x.data(), 1, y.data(), 1, 0, 1), Error);
  CHECK_THROWS_AS(w.rows(GgmlType::Q4_K, wt.data(), 100, x.data(), 1, y.data(), 1, 0, 1), Error);  // not a block multiple
  CHECK_THROWS_AS(w.rows(GgmlType::Q8_0, wt.data(), 32, x.data(), 0, y.data(), 1, 0, 1), Error);   // no tokens
  CHECK_THROWS_AS(w.rows(GgmlType::Q8_0, wt.data(), 32, x.data(), 1, y.data(), 1, 0, 2), Error);   // ldy < row_end
  CHECK_NOTHROW(w.rows(GgmlType::Q8_0, wt.data(), 32, x.data(), 1, y.data(), 1, 1, 1));            // empty range
}

TEST_CASE("prefill GEMM, bf16 tiles: the product of bf16-rounded weights and activations") {
  // Runs wherever oneDNN has a bf16 matmul (emulated on CPUs without AVX512_BF16: slow but exact in f32).
  PrefillGemmWorker worker;
  for (GgmlType t : {GgmlType::BF16, GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::F32}) {
    const int64_t n_out = kPrefillTileRows + 3, n_in = 256, m = 7;
    INFO(ggml_type_name(t));
    const auto w = random_weights(t, n_out, n_in, 21);
    const auto x = test::gaussian(m * n_in, 22);
    std::vector<uint16_t> xb(x.size());
    for (size_t i = 0; i < x.size(); ++i) xb[i] = f32_to_bf16(x[i]);
    std::vector<float> y(static_cast<size_t>(m * n_out), NAN);
    worker.rows(t, w.data(), n_in, xb.data(), MatmulType::BF16, m, y.data(), n_out, 0, n_out);
    const size_t rb = ggml_row_bytes(t, static_cast<uint64_t>(n_in));
    std::vector<float> wr(static_cast<size_t>(n_in));
    int bad = 0;
    for (int64_t r = 0; r < n_out; ++r) {
      dequantize_row(t, w.data() + r * rb, wr.data(), n_in);
      for (int64_t tok = 0; tok < m; ++tok) {
        double exact = 0, mag = 0;
        for (int64_t i = 0; i < n_in; ++i) {
          const double p = double(bf16_to_f32(f32_to_bf16(wr[i]))) * bf16_to_f32(xb[tok * n_in + i]);
          exact += p;
          mag += std::fabs(p);
        }
        bad += !(std::fabs(y[tok * n_out + r] - exact) <= 1e-5 * mag + 1e-7);
      }
    }
    CHECK(bad == 0);
  }
  // Q4_1 / Q5_1: X's extra columns (Q8_1 block sums) and the tiles' mins go through bf16 too.
  for (GgmlType t : {GgmlType::Q4_1, GgmlType::Q5_1}) {
    const int64_t n_out = kPrefillTileRows + 3, n_in = 256, m = 7, k = prefill_gemm_columns(t, n_in);
    INFO(ggml_type_name(t));
    const auto w = random_weights(t, n_out, n_in, 23);
    const auto x = test::gaussian(m * n_in, 24);
    ActivationBuffer act;
    quantize_activations(t, x.data(), m, n_in, act, F32Path::kVecDot);
    std::vector<float> xv(static_cast<size_t>(m * k));
    activation_values(act, xv.data());
    std::vector<uint16_t> xb(xv.size());
    for (size_t i = 0; i < xv.size(); ++i) xb[i] = f32_to_bf16(xv[i]);
    std::vector<float> y(static_cast<size_t>(m * n_out), NAN);
    worker.rows(t, w.data(), n_in, xb.data(), MatmulType::BF16, m, y.data(), n_out, 0, n_out);
    const size_t rb = ggml_row_bytes(t, static_cast<uint64_t>(n_in));
    std::vector<float> wr(static_cast<size_t>(n_in));
    int bad = 0;
    for (int64_t r = 0; r < n_out; ++r) {
      dequantize_row(t, w.data() + r * rb, wr.data(), n_in);
      for (int64_t tok = 0; tok < m; ++tok) {
        double mag = 0;
        const double exact = ggml_dot_in_double(t, w.data() + r * rb, wr.data(), xv.data() + tok * k, n_in, &mag);
        // Each operand rounded to bf16 (2^-9 relative): products within 2^-8 of theirs.
        bad += !(std::fabs(y[tok * n_out + r] - exact) <= 0x1p-8 * mag + 1e-6);
      }
    }
    CHECK(bad == 0);
  }
  CHECK_THROWS_AS(worker.rows(GgmlType::Q8_0, nullptr, 32, nullptr, MatmulType::F16, 1, nullptr, 1, 0, 1), Error);
  const MatmulType chosen = prefill_tile_type();
  CHECK((chosen == MatmulType::F32 || chosen == MatmulType::BF16));
  if (std::getenv("MOETIER_PREFILL_TILE") == nullptr) CHECK(chosen == MatmulType::F32);  // bf16 is opt-in
}

