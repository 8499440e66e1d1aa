// amx_gemm_rows (AMX-INT8 tiles for Q4_K / Q5_K / Q4_0 / Q5_0 batches) reproduces the scalar reference bit for bit at
// awkward shapes (row blocks and token tiles cut short, more tokens than one tile block), and gemm_rows
// hands it the batches it should. Skips with the reason on CPUs without AMX-INT8.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include "common/error.hpp"
#include "cpu/amx_gemm.hpp"
#include "cpu/cpu_features.hpp"
#include "cpu/kernel_registry.hpp"
#include "cpu/matmul.hpp"
#include "cpu/vec_dot.hpp"
#include "format_reader.hpp"

using namespace moetier;
using namespace moetier::cpu;

namespace {

bool no_amx() { return !cpu_features().amx_int8; }

struct Case {
  GgmlType type;
  int64_t n_out, n_in, n_tokens, row_begin, row_end;
};

}  // namespace

TEST_CASE("amx_gemm_rows equals vec_dot_scalar bit for bit" * doctest::skip(no_amx())) {
  const Case cases[] = {
      {GgmlType::Q4_K, 37, 256, 16, 0, 37},    {GgmlType::Q4_K, 16, 512, 17, 0, 16},
      {GgmlType::Q5_K, 21, 768, 33, 3, 20},    {GgmlType::Q4_K, 40, 2304, 130, 1, 40},
      {GgmlType::Q5_K, 19, 256 * 3, 250, 0, 19}, {GgmlType::Q4_K, 64, 2048, 47, 16, 48},
      {GgmlType::Q5_0, 37, 1408, 33, 0, 37},   {GgmlType::Q4_0, 20, 96, 16, 2, 19},
      {GgmlType::Q5_0, 16, 64, 140, 0, 16},
  };
  for (const Case& c : cases) {
    const size_t rb = ggml_row_bytes(c.type, static_cast<uint64_t>(c.n_in));
    std::vector<uint8_t> w(rb * static_cast<size_t>(c.n_out));
    std::mt19937 rng(static_cast<uint32_t>(c.n_in + c.n_tokens));
    for (int64_t r = 0; r < c.n_out; ++r) test::randomize_row(c.type, w.data() + r * rb, c.n_in, rng);
    const auto x = test::gaussian(c.n_tokens * c.n_in, static_cast<uint32_t>(c.n_out));
    ActivationBuffer act;
    quantize_activations(c.type, x.data(), c.n_tokens, c.n_in, act);
    std::vector<float> y(static_cast<size_t>(c.n_tokens * c.n_out), NAN);
    amx_gemm_rows(c.type, w.data(), c.n_in, act, y.data(), c.n_out, c.row_begin, c.row_end);
    int wrong = 0, touched = 0;
    for (int64_t t = 0; t < c.n_tokens; ++t)
      for (int64_t r = 0; r < c.n_out; ++r) {
        const float got = y[static_cast<size_t>(t * c.n_out + r)];
        if (r < c.row_begin || r >= c.row_end) {
          touched += !std::isnan(got);
          continue;
        }
        const float want = vec_dot_scalar(c.type, w.data() + r * rb, act.row(t), c.n_in);
        wrong += std::bit_cast<uint32_t>(got) != std::bit_cast<uint32_t>(want);
      }
    INFO(ggml_type_name(c.type), " ", c.n_out, "x", c.n_in, " tokens ", c.n_tokens, " rows [", c.row_begin, ", ",
         c.row_end, ")");
    CHECK(wrong == 0);
    CHECK(touched == 0);
  }
}

TEST_CASE("gemm_rows sends Q4_K / Q5_K batches of >= kAmxMinTokens to AMX and the rest to the GEMV kernels") {
  CHECK(amx_gemm_supports(GgmlType::Q4_K));
  CHECK(amx_gemm_supports(GgmlType::Q5_K));
  CHECK(amx_gemm_supports(GgmlType::Q4_0));
  CHECK(amx_gemm_supports(GgmlType::Q5_0));
  CHECK_FALSE(amx_gemm_supports(GgmlType::Q8_0));  // ggml's own Q8_0 lane order is not a per-block sum
  // Same bits whether the batch takes AMX (gemm_rows) or the AVX-512 / AVX2 kernels (capped ISA).
  const int64_t n_out = 24, n_in = 512;
  for (int64_t n_tokens : {kAmxMinTokens - 1, kAmxMinTokens, int64_t{40}}) {
    const size_t rb = ggml_row_bytes(GgmlType::Q4_K, n_in);
    std::vector<uint8_t> w(rb * n_out);
    std::mt19937 rng(3);
    for (int64_t r = 0; r < n_out; ++r) test::randomize_row(GgmlType::Q4_K, w.data() + r * rb, n_in, rng);
    const auto x = test::gaussian(n_tokens * n_in, 9);
    ActivationBuffer act;
    quantize_activations(GgmlType::Q4_K, x.data(), n_tokens, n_in, act);
    std::vector<float> best(static_cast<size_t>(n_tokens * n_out)), capped(best.size());
    gemm_rows(GgmlType::Q4_K, w.data(), n_in, act, best.data(), n_out, 0, n_out);
    gemm_rows_isa(Isa::kAvx2, GgmlType::Q4_K, w.data(), n_in, act, capped.data(), n_out, 0, n_out);
    int wrong = 0;
    for (size_t i = 0; i < best.size(); ++i) wrong += std::bit_cast<uint32_t>(best[i]) != std::bit_cast<uint32_t>(capped[i]);
    INFO("tokens ", n_tokens, " best ISA ", isa_name(best_isa(cpu_features())));
    CHECK(wrong == 0);
  }
  if (no_amx()) {
    ActivationBuffer act;
    std::vector<float> x(256, 1.0f), y(1);
    std::vector<uint8_t> w(ggml_row_bytes(GgmlType::Q4_K, 256));
    quantize_activations(GgmlType::Q4_K, x.data(), 1, 256, act);
    CHECK_THROWS_AS(amx_gemm_rows(GgmlType::Q4_K, w.data(), 256, act, y.data(), 1, 0, 1), Error);
  }
}
