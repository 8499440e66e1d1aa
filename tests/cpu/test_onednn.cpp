// Tests of the oneDNN matmul against a naive double-precision reference, with an error bound that
// follows from the input rounding (bf16: 2^-8 relative per product) and f32 accumulation (K * 2^-24).
#include <doctest/doctest.h>

#include "common/error.hpp"
#include "common/half.hpp"
#include "cpu/onednn_matmul.hpp"

#include <cmath>
#include <random>
#include <vector>

using namespace moetier;
using namespace moetier::cpu;

namespace {

// A matrix stored in `type`, plus the exact f32 values it holds.
struct Matrix {
  std::vector<uint16_t> half;  // f16 / bf16 bits
  std::vector<float> f32;      // values (exact for every type)
  MatmulType type;
  const void* data() const { return type == MatmulType::F32 ? static_cast<const void*>(f32.data()) : half.data(); }
};

Matrix random_matrix(int64_t rows, int64_t cols, MatmulType type, float scale, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  Matrix m{{}, std::vector<float>(static_cast<size_t>(rows * cols)), type};
  if (type != MatmulType::F32) m.half.resize(m.f32.size());
  for (size_t i = 0; i < m.f32.size(); ++i) {
    const float v = dist(rng);
    if (type == MatmulType::F16) {
      m.half[i] = f32_to_fp16(v);
      m.f32[i] = fp16_to_f32(m.half[i]);
    } else if (type == MatmulType::BF16) {
      m.half[i] = f32_to_bf16(v);
      m.f32[i] = bf16_to_f32(m.half[i]);
    } else {
      m.f32[i] = v;
    }
  }
  return m;
}

// Checks y against the reference; returns the number of elements outside the bound.
int count_bad(const MatmulKey& key, MatmulType compute, const Matrix& x, const Matrix& w, const std::vector<float>& y) {
  const bool x_rounded = compute == MatmulType::BF16 && key.x_type == MatmulType::F32;
  const double rel = (x_rounded ? std::ldexp(1.0, -8) : 0.0) + static_cast<double>(key.k + 2) * std::ldexp(1.0, -24);
  int bad = 0;
  for (int64_t i = 0; i < key.m; ++i)
    for (int64_t j = 0; j < key.n; ++j) {
      double ref = 0, mag = 0;
      for (int64_t p = 0; p < key.k; ++p) {
        const double prod = static_cast<double>(x.f32[static_cast<size_t>(i * key.k + p)]) *
                            static_cast<double>(w.f32[static_cast<size_t>(j * key.k + p)]);
        ref += prod;
        mag += std::fabs(prod);
      }
      const double got = y[static_cast<size_t>(i * key.n + j)];
      if (!(std::fabs(got - ref) <= rel * mag + 1e-30)) ++bad;
    }
  return bad;
}

}  // namespace

TEST_CASE("onednn matmul: Y = X W^T matches the reference for all type pairs, plain and packed weights") {
  struct Shape { int64_t m, n, k; };
  const Shape shapes[] = {{1, 1, 1}, {1, 64, 128}, {7, 13, 33}, {32, 96, 256}, {64, 257, 512}};
  const std::pair<MatmulType, MatmulType> types[] = {
      {MatmulType::F32, MatmulType::F32},  {MatmulType::F32, MatmulType::BF16}, {MatmulType::BF16, MatmulType::BF16},
      {MatmulType::F32, MatmulType::F16},  {MatmulType::BF16, MatmulType::F32}, {MatmulType::BF16, MatmulType::F16}};
  OnednnMatmul mm;
  std::mt19937 rng(7);
  for (const Shape& s : shapes)
    for (auto [xt, wt] : types)
      for (bool packed : {false, true}) {
        const MatmulKey key{s.m, s.n, s.k, xt, wt, packed};
        const Matrix x = random_matrix(s.m, s.k, xt, 1.0f, rng);
        const Matrix w = random_matrix(s.n, s.k, wt, 0.25f, rng);
        std::vector<float> y(static_cast<size_t>(s.m * s.n), std::nanf(""));
        MatmulPlan& plan = mm.plan(key);
        CHECK(plan.key() == key);
        if (wt == MatmulType::BF16) CHECK((plan.compute_type() == MatmulType::BF16 || plan.compute_type() == MatmulType::F32));
        else CHECK(plan.compute_type() == MatmulType::F32);
        if (packed) {
          const PackedWeights pw = mm.pack(plan, w.data());
          CHECK(pw.bytes() == plan.packed_weight_bytes());
          CHECK(pw.bytes() >= static_cast<size_t>(s.n * s.k) * type_size(plan.compute_type()));
          mm.execute(plan, x.data(), pw, y.data());
        } else {
          CHECK(plan.packed_weight_bytes() == 0);
          mm.execute(plan, x.data(), w.data(), y.data());
        }
        const int bad = count_bad(key, plan.compute_type(), x, w, y);
        CHECK_MESSAGE(bad == 0, "M=" << s.m << " N=" << s.n << " K=" << s.k << " X " << to_string(xt) << " W "
                                     << to_string(wt) << (packed ? " packed" : "") << " impl " << plan.implementation());
      }
}

TEST_CASE("onednn matmul: plans are cached per shape and reused; repeated execution is stable") {
  OnednnMatmul mm;
  const MatmulKey a{4, 32, 64, MatmulType::F32, MatmulType::BF16, false};
  MatmulKey b = a;
  b.m = 5;
  MatmulPlan& pa = mm.plan(a);
  CHECK(mm.n_plans() == 1);
  CHECK(&mm.plan(a) == &pa);
  CHECK(mm.n_plans() == 1);
  MatmulPlan& pb = mm.plan(b);
  CHECK(&pb != &pa);
  CHECK(mm.n_plans() == 2);
  CHECK_FALSE(pa.implementation().empty());
  MESSAGE("bf16 impl: " << pa.implementation());

  std::mt19937 rng(3);
  const Matrix x = random_matrix(a.m, a.k, a.x_type, 1.0f, rng);
  const Matrix w = random_matrix(a.n, a.k, a.w_type, 1.0f, rng);
  std::vector<float> y1(static_cast<size_t>(a.m * a.n)), y2(y1.size());
  mm.execute(pa, x.data(), w.data(), y1.data());
  mm.execute(mm.plan(a), x.data(), w.data(), y2.data());
  CHECK(y1 == y2);
  CHECK(count_bad(a, pa.compute_type(), x, w, y1) == 0);
}

TEST_CASE("onednn matmul: misuse throws moetier::Error") {
  OnednnMatmul mm;
  CHECK_THROWS_AS(mm.plan(MatmulKey{0, 4, 4}), Error);
  CHECK_THROWS_AS(mm.plan(MatmulKey{4, 4, -1}), Error);
  CHECK_THROWS_AS(mm.plan(MatmulKey{4, 4, 4, MatmulType::F16, MatmulType::F16}), Error);
  std::vector<float> x(16, 1.0f), w(16, 1.0f), y(16);
  MatmulPlan& plain = mm.plan(MatmulKey{4, 4, 4});
  MatmulPlan& packed = mm.plan(MatmulKey{4, 4, 4, MatmulType::F32, MatmulType::F32, true});
  CHECK_THROWS_AS(mm.pack(plain, w.data()), Error);
  CHECK_THROWS_AS(mm.execute(packed, x.data(), w.data(), y.data()), Error);
  MatmulPlan& other = mm.plan(MatmulKey{2, 4, 4, MatmulType::F32, MatmulType::F32, true});
  const PackedWeights pw = mm.pack(other, w.data());
  CHECK_THROWS_AS(mm.execute(packed, x.data(), pw, y.data()), Error);
  mm.execute(plain, x.data(), w.data(), y.data());
  for (float v : y) CHECK(v == 4.0f);
}
