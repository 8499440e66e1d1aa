// gemm_rows / matmul / get_row / kernel registry: every kernel variant the CPU can run reproduces the
// scalar reference bit for bit, whatever the row split and token grouping; argument checks throw.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/error.hpp"
#include "cpu/dequant.hpp"
#include "cpu/kernel_registry.hpp"
#include "cpu/matmul.hpp"
#include "format_reader.hpp"

using namespace moetier;
using namespace moetier::cpu;

namespace {

const GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                           GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::MXFP4, GgmlType::Q2_K,
                           GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ2_XXS,
                           GgmlType::IQ2_XS, GgmlType::IQ2_S, GgmlType::IQ3_XXS, GgmlType::IQ3_S, GgmlType::IQ1_S,
                           GgmlType::IQ1_M, GgmlType::IQ4_NL, GgmlType::IQ4_XS};

struct Problem {
  GgmlType type;
  int64_t n_out, n_in, n_tokens;
  std::vector<uint8_t> w;
  std::vector<float> x;
};

Problem make_problem(GgmlType t, int64_t n_out, int64_t n_in, int64_t n_tokens, uint32_t seed) {
  Problem p{t, n_out, n_in, n_tokens, {}, test::gaussian(n_tokens * n_in, seed)};
  std::mt19937 rng(seed);
  const size_t rb = ggml_row_bytes(t, static_cast<uint64_t>(n_in));
  p.w.resize(rb * static_cast<size_t>(n_out));
  for (int64_t r = 0; r < n_out; ++r) test::randomize_row(t, p.w.data() + r * rb, n_in, rng);
  return p;
}

// Reference: vec_dot_scalar per (token, row). (F32 weights in batches may take ggml's tiled order instead,
// see F32Path in matmul.hpp; the shapes below keep F32 on the vec_dot order: n_in % 16 != 0 or n_out % 4 != 0.)
std::vector<float> reference(const Problem& p, const ActivationBuffer& act) {
  std::vector<float> y(static_cast<size_t>(p.n_tokens * p.n_out));
  const size_t rb = ggml_row_bytes(p.type, static_cast<uint64_t>(p.n_in));
  for (int64_t t = 0; t < p.n_tokens; ++t)
    for (int64_t r = 0; r < p.n_out; ++r)
      y[t * p.n_out + r] = vec_dot_scalar(p.type, p.w.data() + r * rb, act.row(t), p.n_in);
  return y;
}

int bit_mismatches(const std::vector<float>& a, const std::vector<float>& b) {
  int n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i]);
  return n;
}

std::vector<Isa> runnable_isas() {
  std::vector<Isa> v{Isa::kScalar};
  if (best_isa(cpu_features()) >= Isa::kAvx2) v.push_back(Isa::kAvx2);
  if (best_isa(cpu_features()) >= Isa::kAvx512) v.push_back(Isa::kAvx512);
  return v;
}

}  // namespace

TEST_CASE("gemm_rows: every runnable ISA reproduces the scalar reference bit for bit") {
  MESSAGE("CPU features: ", cpu_features().to_string(), "; best ISA: ", isa_name(best_isa(cpu_features())));
  for (GgmlType t : kTypes) {
    const int64_t bs = matmul_block_size(t);
    struct Shape { int64_t n_out, n_in, n_tokens; };
    const Shape shapes[] = {{1, bs == 1 ? 1 : bs, 1},
                            {9, bs == 1 ? 37 : bs * 3, 3},
                            {19, bs == 1 ? 16 * 9 : bs * 9, 8},
                            {33, bs == 1 ? 100 : bs * 2, 11},
                            {21, bs == 1 ? 48 : bs * 2, 1}};  // multi-row decode paths and their tails
    for (const auto& s : shapes) {
      auto p = make_problem(t, s.n_out, s.n_in, s.n_tokens, static_cast<uint32_t>(s.n_out * 131 + s.n_in));
      ActivationBuffer act;
      quantize_activations(t, p.x.data(), p.n_tokens, p.n_in, act);
      const auto want = reference(p, act);
      for (Isa isa : runnable_isas()) {
        std::vector<float> y(want.size(), NAN);
        gemm_rows_isa(isa, t, p.w.data(), p.n_in, act, y.data(), p.n_out, 0, p.n_out);
        INFO(ggml_type_name(t), " ", isa_name(isa), " kernel ", select_gemv(t, 1, isa)->name, " shape ", s.n_out, "x",
             s.n_in, " tokens ", s.n_tokens);
        CHECK(bit_mismatches(y, want) == 0);
      }
    }
  }
}

TEST_CASE("every registered kernel variant the CPU runs, at every token count it takes, equals the scalar reference") {
  // gemm_rows only ever reaches one variant per (type, token count); calling each directly also covers the
  // GEMV kernels that the tile kernels (e.g. q4_k_tile.avx512 for 4..8 tokens) shadow, and the tile
  // kernels' fallback for rows longer than their token table (n_in = 41216 for the K-quants).
  const Isa runnable = best_isa(cpu_features());
  int checked = 0;
  for (const GemvKernel& k : gemv_kernels()) {
    if (k.isa > runnable || k.isa == Isa::kScalar || k.weight_type == GgmlType::F32) continue;
    const int64_t bs = matmul_block_size(k.weight_type);
    for (int64_t n_in : {bs * 9, bs == 256 ? bs * 161 : bs * 2}) {
      const int64_t n_out = n_in > 20000 ? 3 : 21;
      auto p = make_problem(k.weight_type, n_out, n_in, k.max_tokens, static_cast<uint32_t>(n_in + 7));
      ActivationBuffer act;
      quantize_activations(k.weight_type, p.x.data(), p.n_tokens, p.n_in, act);
      const auto want = reference(p, act);
      for (int n_tokens = k.min_tokens; n_tokens <= k.max_tokens; ++n_tokens) {
        std::vector<float> y(want.size(), NAN);
        GemvArgs a{};
        a.w = reinterpret_cast<const std::byte*>(p.w.data());
        a.w_row_bytes = ggml_row_bytes(k.weight_type, static_cast<uint64_t>(n_in));
        a.n_in = n_in;
        a.act = static_cast<const std::byte*>(act.row(0));
        a.act_stride = act.row_stride();
        a.n_tokens = n_tokens;
        a.y = y.data();
        a.ldy = n_out;
        a.row_begin = 1;  // rows [1, n_out): row 0 must stay untouched
        a.row_end = n_out;
        k.fn(a);
        int wrong = 0, touched = 0;
        for (int64_t tok = 0; tok < p.n_tokens; ++tok)
          for (int64_t r = 0; r < n_out; ++r) {
            const float got = y[static_cast<size_t>(tok * n_out + r)];
            if (tok >= n_tokens || r == 0) {
              touched += !std::isnan(got);
            } else {
              wrong += std::bit_cast<uint32_t>(got) != std::bit_cast<uint32_t>(want[static_cast<size_t>(tok * n_out + r)]);
            }
          }
        INFO(k.name, " n_in ", n_in, " tokens ", n_tokens);
        CHECK(wrong == 0);
        CHECK(touched == 0);
        ++checked;
      }
    }
  }
  MESSAGE(checked, " (variant, n_in, token count) cases checked on ", isa_name(runnable));
  if (runnable >= Isa::kAvx2) CHECK(checked > 0);
}

TEST_CASE("gemm_rows: results do not depend on the row split or on the token grouping") {
  for (GgmlType t : kTypes) {
    const int64_t n_in = matmul_block_size(t) == 1 ? 75 : matmul_block_size(t) * 2;
    auto p = make_problem(t, 29, n_in, 10, 5);
    ActivationBuffer act;
    quantize_activations(t, p.x.data(), p.n_tokens, p.n_in, act);
    std::vector<float> whole(static_cast<size_t>(p.n_tokens * p.n_out));
    gemm_rows(t, p.w.data(), n_in, act, whole.data(), p.n_out, 0, p.n_out);
    std::vector<float> split(whole.size(), NAN);
    for (int64_t r0 : {0, 1, 4, 13, 20, 21}) {
      const int64_t r1 = r0 == 21 ? p.n_out : (r0 == 0 ? 1 : r0 == 1 ? 4 : r0 == 4 ? 13 : r0 == 13 ? 20 : 21);
      gemm_rows(t, p.w.data(), n_in, act, split.data(), p.n_out, r0, r1);
    }
    CHECK(bit_mismatches(split, whole) == 0);
    // Each token alone gives the same row as within the batch of 10.
    for (int64_t tok : {0, 7, 9}) {
      ActivationBuffer one;
      quantize_activations(t, p.x.data() + tok * n_in, 1, n_in, one);
      std::vector<float> y(static_cast<size_t>(p.n_out));
      gemm_rows(t, p.w.data(), n_in, one, y.data(), p.n_out, 0, p.n_out);
      std::vector<float> row(whole.begin() + tok * p.n_out, whole.begin() + (tok + 1) * p.n_out);
      INFO(ggml_type_name(t), " token ", tok);
      CHECK(bit_mismatches(y, row) == 0);
    }
  }
}

TEST_CASE("matmul against dequantised weights in double") {
  for (GgmlType t : kTypes) {
    const int64_t n_in = matmul_block_size(t) == 1 ? 48 : matmul_block_size(t) * 2;
    auto p = make_problem(t, 5, n_in, 2, 11);
    ActivationBuffer scratch;
    std::vector<float> y(10);
    matmul(t, p.w.data(), p.n_out, n_in, p.x.data(), p.n_tokens, y.data(), scratch);
    const size_t rb = ggml_row_bytes(t, static_cast<uint64_t>(n_in));
    std::vector<float> wr(static_cast<size_t>(n_in));
    for (int64_t r = 0; r < p.n_out; ++r) {
      dequantize_row(t, p.w.data() + r * rb, wr.data(), n_in);
      for (int64_t tok = 0; tok < 2; ++tok) {
        double exact = 0, mag = 0;
        for (int64_t i = 0; i < n_in; ++i) {
          exact += double(wr[i]) * p.x[tok * n_in + i];
          mag += std::fabs(double(wr[i]) * p.x[tok * n_in + i]);
        }
        // Activation quantisation dominates: Q8 has a relative step of 1/127 per block (half of it as error),
        // F16 2^-11, BF16 2^-8, F32 exact; mins (Q4_1/Q5_1/K) can make `mag` understate, hence 4x.
        const GgmlType at = vec_dot_type_for(t);
        const double rel = at == GgmlType::F32 ? 1e-6 : at == GgmlType::F16 ? 1e-3 : at == GgmlType::BF16 ? 8e-3 : 4.0 / 127;
        INFO(ggml_type_name(t));
        CHECK(std::fabs(y[tok * p.n_out + r] - exact) <= rel * mag + 1e-6);
      }
    }
  }
}

TEST_CASE("ActivationBuffer: sized once, no reallocation for equal or smaller batches") {
  const auto x = test::gaussian(8 * 512, 1);
  ActivationBuffer act;
  act.reserve(GgmlType::Q8_K, 8, 512);
  const void* p0 = act.row(0);
  const size_t cap = act.capacity_bytes();
  quantize_activations(GgmlType::Q4_K, x.data(), 8, 512, act);
  quantize_activations(GgmlType::Q4_0, x.data(), 3, 512, act);  // Q8_0 rows are smaller
  CHECK(act.row(0) == p0);
  CHECK(act.capacity_bytes() == cap);
  CHECK(act.type() == GgmlType::Q8_0);
  CHECK(act.n_tokens() == 3);
  CHECK(act.row_stride() % 64 == 0);
}

TEST_CASE("argument checks throw moetier::Error at the API boundary") {
  const auto x = test::gaussian(2 * 512, 1);
  std::vector<uint8_t> w(ggml_row_bytes(GgmlType::Q4_K, 512) * 4);
  std::vector<float> y(8);
  ActivationBuffer act;
  CHECK_THROWS_AS(quantize_activations(GgmlType::Q4_K, x.data(), 2, 500, act), Error);
  CHECK_THROWS_AS(quantize_activations(GgmlType::TQ1_0, x.data(), 2, 512, act), Error);
  quantize_activations(GgmlType::Q4_K, x.data(), 2, 512, act);
  CHECK_THROWS_AS(gemm_rows(GgmlType::Q4_K, w.data(), 256, act, y.data(), 4, 0, 4), Error);  // n_in mismatch
  CHECK_THROWS_AS(gemm_rows(GgmlType::Q8_0, w.data(), 512, act, y.data(), 4, 0, 4), Error);  // wrong act type
  CHECK_THROWS_AS(gemm_rows(GgmlType::Q4_K, w.data(), 512, act, y.data(), 4, 3, 2), Error);  // bad range
  CHECK_THROWS_AS(gemm_rows(GgmlType::Q4_K, w.data(), 512, act, y.data(), 4, 0, 5), Error);
  CHECK_NOTHROW(gemm_rows(GgmlType::Q4_K, w.data(), 512, act, y.data(), 4, 2, 2));  // empty range is fine
  try {
    quantize_activations(GgmlType::Q4_K, x.data(), 2, 500, act);
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("500") != std::string::npos);
  }
}

TEST_CASE("get_row dequantises one row and checks its index") {
  std::mt19937 rng(3);
  std::vector<uint8_t> w(ggml_row_bytes(GgmlType::Q6_K, 256) * 3);
  for (int r = 0; r < 3; ++r) test::randomize_row(GgmlType::Q6_K, w.data() + r * 210, 256, rng);
  std::vector<float> a(256), b(256);
  get_row(GgmlType::Q6_K, w.data(), 3, 256, 2, a.data());
  dequantize_row(GgmlType::Q6_K, w.data() + 2 * 210, b.data(), 256);
  CHECK(a == b);
  CHECK_THROWS_AS(get_row(GgmlType::Q6_K, w.data(), 3, 256, 3, a.data()), Error);
  CHECK_THROWS_AS(get_row(GgmlType::Q6_K, w.data(), 3, 255, 0, a.data()), Error);
}

TEST_CASE("kernel registry: scalar always available, explain names the chosen variant") {
  for (GgmlType t : kTypes) {
    const GemvKernel* k = select_gemv(t, 1, Isa::kScalar);
    REQUIRE(k != nullptr);
    CHECK(k->isa == Isa::kScalar);
    const GemvKernel* best = select_gemv(t, 1, best_isa(cpu_features()));
    REQUIRE(best != nullptr);
    const std::string why = explain_gemv(t, 1, cpu_features());
    CHECK(why.find(std::string(best->name) + ": chosen") != std::string::npos);
  }
  CHECK(select_gemv(GgmlType::TQ1_0, 1, Isa::kAvx512) == nullptr);
  CpuFeatures none;
  const std::string why = explain_gemv(GgmlType::Q4_K, 1, none);
  CHECK(why.find("q4_k.scalar: chosen") != std::string::npos);
  if (select_gemv(GgmlType::Q4_K, 1, Isa::kAvx2)->isa == Isa::kAvx2) CHECK(why.find("declined: needs avx2") != std::string::npos);
  // Choice logic for CPUs this machine may not be (nothing is run): AVX-512 needs VNNI as well.
  CpuFeatures zen4;
  zen4.avx2 = zen4.avx512 = zen4.avx512_vnni = zen4.avx512_bf16 = true;
  CpuFeatures skylake_x = zen4;
  skylake_x.avx512_vnni = skylake_x.avx512_bf16 = false;
  CHECK(best_isa(zen4) == Isa::kAvx512);
  CHECK(best_isa(skylake_x) == Isa::kAvx2);
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q4_0,
                     GgmlType::F16, GgmlType::MXFP4}) {
    const GemvKernel* k = select_gemv(t, 1, Isa::kAvx512);
    REQUIRE(k != nullptr);
    CHECK(k->isa == Isa::kAvx512);
    CHECK(explain_gemv(t, 1, zen4).find(std::string(k->name) + ": chosen") != std::string::npos);
  }
  CHECK(select_gemv(GgmlType::Q4_K, 9, Isa::kAvx512) == nullptr);  // gemm_rows splits batches into <= 8
}

TEST_CASE("gemm_rows: a NaN / inf activation makes every output of its token non-finite, every ISA and type") {
  const float bads[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()};
  for (GgmlType t : kTypes) {
    const int64_t bs = matmul_block_size(t);
    const int64_t n_in = bs == 1 ? 64 : bs * 2;
    for (float bad : bads) {
      for (bool whole_row : {false, true}) {
        auto p = make_problem(t, 13, n_in, 3, 17);
        ActivationBuffer clean_act;
        quantize_activations(t, p.x.data(), p.n_tokens, p.n_in, clean_act);
        const auto clean = reference(p, clean_act);
        // Token 1 gets the bad value in its last element (or everywhere: an all-NaN hidden state used to
        // quantise to d = 0 and give exactly 0 for every output).
        float* row = p.x.data() + n_in;
        if (whole_row) std::fill(row, row + n_in, bad);
        row[n_in - 1] = bad;
        ActivationBuffer act;
        quantize_activations(t, p.x.data(), p.n_tokens, p.n_in, act);
        for (Isa isa : runnable_isas()) {
          std::vector<float> y(clean.size(), 0.0f);
          gemm_rows_isa(isa, t, p.w.data(), p.n_in, act, y.data(), p.n_out, 0, p.n_out);
          INFO(ggml_type_name(t), " ", isa_name(isa), " bad ", bad, " whole row ", whole_row);
          int finite_in_bad_token = 0;
          for (int64_t o = 0; o < p.n_out; ++o) finite_in_bad_token += std::isfinite(y[p.n_out + o]);
          CHECK(finite_in_bad_token == 0);
          // The other tokens are untouched, bit for bit.
          for (int64_t tok : {0, 2})
            for (int64_t o = 0; o < p.n_out; ++o)
              CHECK(std::bit_cast<uint32_t>(y[tok * p.n_out + o]) == std::bit_cast<uint32_t>(clean[tok * p.n_out + o]));
        }
      }
    }
  }
}
