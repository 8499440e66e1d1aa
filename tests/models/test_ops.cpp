// Unit tests of the f32 operators of cpu/ops.hpp against plain scalar references written here from the
// formulas (double precision): RMSNorm, RoPE (NORM = adjacent pairs, NEOX = halves, partial rotation,
// YaRN from the YaRN paper, arXiv 2309.00071, section 3), softmax, SiLU / SwiGLU, causal attention with
// GQA, sliding window and sinks, and MLA's absorbed attention (DeepSeek-V2 paper, section 2.1) against the
// naive decompressed form.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <vector>

#include "cpu/ops.hpp"
#include "scheduler/linear_exec.hpp"
#include "runtime/models/weights.hpp"

using namespace moetier;

namespace {

std::vector<float> randn(size_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// ---- RoPE reference -------------------------------------------------------------------------------

struct RopeRef {
  // Per rotated pair i (0 .. n_rot/2 - 1): the angle and the magnitude of cos / sin.
  std::vector<double> theta, mag, theta_extrap;
};

/// theta_i = pos * base^(-2i / n_rot) (RoFormer); with a scale s = freq_scale < 1 plain position
/// interpolation uses s * theta_i. YaRN ("NTK-by-parts", YaRN paper eq. 17-19): the wavelength of pair i
/// is lambda_i = 2 pi / base^(-2i/n_rot); r_i = L / lambda_i rotations over the original context L.
/// Pairs turning more than beta_fast times keep theta_i (extrapolation), pairs turning fewer than
/// beta_slow times are fully interpolated, linear in between. Solving r = beta for i gives the
/// correction dimension d(beta) = n_rot ln(L / (2 pi beta)) / (2 ln base); as in llama.cpp the ramp is
/// over pair indices in [floor d(beta_fast), ceil d(beta_slow)], clamped to [0, n_rot - 1]. The
/// attention temperature sqrt(1/t) = 1 + 0.1 ln(1/s) (paper eq. 22) multiplies cos and sin.
RopeRef rope_reference(const cpu::RopeParams& p, int64_t pos) {
  RopeRef r;
  const int n_pairs = p.n_rot / 2;
  double low = 0, high = 0;
  const bool yarn = p.ext_factor != 0.0f;
  if (yarn) {
    auto corr_dim = [&](double beta) {
      return p.n_rot * std::log(p.n_ctx_orig / (2.0 * std::numbers::pi * beta)) / (2.0 * std::log(double(p.freq_base)));
    };
    low = std::max(0.0, std::floor(corr_dim(p.beta_fast)));
    high = std::min(double(p.n_rot - 1), std::ceil(corr_dim(p.beta_slow)));
  }
  for (int i = 0; i < n_pairs; ++i) {
    const double extrap = double(pos) * std::pow(double(p.freq_base), -2.0 * i / p.n_rot);
    const double interp = extrap * p.freq_scale;
    double theta = interp, mag = p.attn_factor;
    if (yarn) {
      const double y = (i - low) / std::max(0.001, high - low);
      const double extrap_share = (1.0 - std::clamp(y, 0.0, 1.0)) * p.ext_factor;
      theta = interp * (1.0 - extrap_share) + extrap * extrap_share;
      mag *= 1.0 + 0.1 * std::log(1.0 / p.freq_scale);
    }
    r.theta.push_back(theta);
    r.mag.push_back(mag);
    r.theta_extrap.push_back(extrap);
  }
  return r;
}

/// Applies rope to x [n_heads, head_dim] with the reference angles (double) and compares with ops.
/// The f32 table computes theta_i = pos * scale^i by repeated multiplication with a rounded scale, so
/// theta_i carries a relative error of about 1.5 i ulp (plus ~2 ulp for the interpolation mix): the
/// bound grows with the angle; pair 0 (theta = pos, exact) is held to 2e-6.
void check_rope(const cpu::RopeParams& p, int64_t pos, int64_t n_heads, int64_t head_dim) {
  CAPTURE(pos);
  CAPTURE(p.neox);
  CAPTURE(p.n_rot);
  const RopeRef ref = rope_reference(p, pos);
  const std::vector<float> x0 = randn(static_cast<size_t>(n_heads * head_dim), 100 + static_cast<uint32_t>(pos));
  std::vector<float> x = x0;
  std::vector<float> cs(static_cast<size_t>(p.n_rot));
  cpu::rope_cache(p, pos, cs.data());
  cpu::rope_apply(p, cs.data(), x.data(), n_heads, head_dim);

  const int n_pairs = p.n_rot / 2;
  const int scaled = p.freq_scale != 1.0f || p.ext_factor != 0.0f ? 2 : 0;
  for (int64_t h = 0; h < n_heads; ++h) {
    const float* in = x0.data() + h * head_dim;
    const float* out = x.data() + h * head_dim;
    for (int i = 0; i < n_pairs; ++i) {
      const int a = p.neox ? i : 2 * i;
      const int b = p.neox ? i + n_pairs : 2 * i + 1;
      const double c = std::cos(ref.theta[i]) * ref.mag[i], s = std::sin(ref.theta[i]) * ref.mag[i];
      const double ya = in[a] * c - in[b] * s, yb = in[a] * s + in[b] * c;
      const double tol = (std::fabs(in[a]) + std::fabs(in[b])) * ref.mag[i] *
                         (2e-6 + 1.5e-7 * (i + scaled) * ref.theta_extrap[i]);
      CAPTURE(h);
      CAPTURE(i);
      CHECK(std::fabs(out[a] - ya) <= tol);
      CHECK(std::fabs(out[b] - yb) <= tol);
    }
    // Dimensions past n_rot are copied unchanged (bit for bit).
    for (int64_t d = p.n_rot; d < head_dim; ++d) CHECK(out[d] == in[d]);
  }
}

// ---- attention reference --------------------------------------------------------------------------

struct AttnCase {
  int64_t n_tokens = 5, n_head = 8, n_head_kv = 2, d_k = 16, d_v = 12, pos0 = 3;
  int64_t k_stride = 0, v_stride = 0;  // filled by make()
  int64_t window = 0;
  bool sinks = false;
  bool wrong_kv_map = false;  // reference only: query head h reads KV head h % n_head_kv (a plausible bug)
  std::vector<float> q, k, v, sink;

  void make(uint32_t seed) {
    k_stride = n_head_kv * d_k + 3;  // padded rows: the strides must be honoured
    v_stride = n_head_kv * d_v + 5;
    const int64_t n_pos = pos0 + n_tokens;
    q = randn(static_cast<size_t>(n_tokens * n_head * d_k), seed);
    k = randn(static_cast<size_t>((n_pos + 2) * k_stride), seed + 1);
    v = randn(static_cast<size_t>((n_pos + 2) * v_stride), seed + 2);
    // Rows past the last query position must never be read: poison them.
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::fill(k.begin() + n_pos * k_stride, k.end(), nan);
    std::fill(v.begin() + n_pos * v_stride, v.end(), nan);
    sink = randn(static_cast<size_t>(n_head), seed + 3, 2.0f);
    sink[1] = 8.0f;  // one dominant sink: most of head 1's mass goes nowhere
  }

  cpu::AttentionArgs args(float* out) const {
    cpu::AttentionArgs a;
    a.q = q.data();
    a.n_tokens = n_tokens, a.n_head = n_head, a.n_head_kv = n_head_kv, a.d_k = d_k, a.d_v = d_v;
    a.k = k.data(), a.k_stride = k_stride, a.v = v.data(), a.v_stride = v_stride;
    a.pos0 = pos0;
    a.scale = 1.0f / std::sqrt(static_cast<float>(d_k));
    a.window = window;
    a.sinks = sinks ? sink.data() : nullptr;
    a.out = out;
    return a;
  }

  /// Naive attention in double: softmax over keys pos - window < j <= pos (+ sink) of q.k * scale.
  std::vector<double> reference() const {
    std::vector<double> out(static_cast<size_t>(n_tokens * n_head * d_v), 0.0);
    const double scale = 1.0 / std::sqrt(double(d_k));
    const int64_t group = n_head / n_head_kv;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const int64_t pos = pos0 + t;
      for (int64_t h = 0; h < n_head; ++h) {
        const int64_t g = wrong_kv_map ? h % n_head_kv : h / group;
        std::vector<double> s;
        std::vector<int64_t> js;
        for (int64_t j = 0; j <= pos; ++j) {
          if (window > 0 && j <= pos - window) continue;
          double dot = 0;
          for (int64_t i = 0; i < d_k; ++i) dot += double(q[(t * n_head + h) * d_k + i]) * k[j * k_stride + g * d_k + i];
          s.push_back(dot * scale);
          js.push_back(j);
        }
        double mx = *std::max_element(s.begin(), s.end());
        if (sinks) mx = std::max(mx, double(sink[h]));
        double den = sinks ? std::exp(sink[h] - mx) : 0.0;
        for (double x : s) den += std::exp(x - mx);
        for (size_t m = 0; m < s.size(); ++m) {
          const double pr = std::exp(s[m] - mx) / den;
          for (int64_t i = 0; i < d_v; ++i) out[(t * n_head + h) * d_v + i] += pr * v[js[m] * v_stride + g * d_v + i];
        }
      }
    }
    return out;
  }
};

std::vector<float> run_attention(const AttnCase& c) {
  std::vector<float> out(static_cast<size_t>(c.n_tokens * c.n_head * c.d_v), -1.0f);
  std::vector<float> scratch(static_cast<size_t>(cpu::attention_scratch_floats(c.args(out.data()))));
  cpu::attention(c.args(out.data()), 0, c.n_head, scratch.data());
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

/// A view of an f32 matrix W [n_out, n_in] as a models::Weight.
models::Weight f32_weight(const std::vector<float>& w, int64_t n_out, int64_t n_in, int64_t offset = 0) {
  return models::Weight{GgmlType::F32, reinterpret_cast<const std::byte*>(w.data() + offset), n_out, n_in,
                        static_cast<uint64_t>(n_in) * sizeof(float)};
}

}  // namespace

TEST_CASE("rms_norm matches a double-precision reference") {
  for (int64_t n : {1, 7, 128, 4096}) {
    CAPTURE(n);
    std::vector<float> x = randn(static_cast<size_t>(n), 1, 3.0f);
    x[0] = 50.0f;  // one large outlier
    const std::vector<float> w = randn(static_cast<size_t>(n), 2);
    for (float eps : {1e-6f, 1e-5f}) {
      double ss = 0;
      for (float v : x) ss += double(v) * v;
      const double inv = 1.0 / std::sqrt(ss / n + eps);
      std::vector<float> y(x.size()), y_now(x.size());
      cpu::rms_norm(x.data(), w.data(), y.data(), n, eps);
      cpu::rms_norm(x.data(), nullptr, y_now.data(), n, eps);
      for (int64_t i = 0; i < n; ++i) {
        const double ref = x[i] * inv * w[i], ref_now = x[i] * inv;
        CHECK(std::fabs(y[i] - ref) <= 1e-6 * std::fabs(ref) + 1e-30);
        CHECK(std::fabs(y_now[i] - ref_now) <= 1e-6 * std::fabs(ref_now) + 1e-30);
      }
      std::vector<float> inplace = x;  // y may alias x
      cpu::rms_norm(inplace.data(), w.data(), inplace.data(), n, eps);
      CHECK(inplace == y);
    }
  }
  // eps dominates a zero vector: finite zeros, not NaN.
  std::vector<float> z(64, 0.0f), y(64, 1.0f);
  cpu::rms_norm(z.data(), nullptr, y.data(), 64, 1e-6f);
  for (float v : y) CHECK(v == 0.0f);
}

TEST_CASE("rope NORM rotates adjacent pairs by theta_i = pos * base^(-2i/n_rot)") {
  cpu::RopeParams p;
  p.n_rot = 64;
  p.freq_base = 10000.0f;
  for (int64_t pos : {0, 1, 2, 17, 1000, 4095}) check_rope(p, pos, 3, 64);
  p.freq_base = 1e6f;
  for (int64_t pos : {5, 300}) check_rope(p, pos, 2, 64);
}

TEST_CASE("rope NEOX rotates halves (x[i], x[i + n_rot/2])") {
  cpu::RopeParams p;
  p.n_rot = 64;
  p.neox = true;
  p.freq_base = 1e6f;
  for (int64_t pos : {0, 1, 9, 777, 4095}) check_rope(p, pos, 4, 64);
  // NORM and NEOX differ (the test above would not notice a mode that ignores `neox` otherwise).
  cpu::RopeParams norm = p;
  norm.neox = false;
  std::vector<float> cs(64), a = randn(64, 5), b = a;
  cpu::rope_cache(p, 11, cs.data());
  cpu::rope_apply(p, cs.data(), a.data(), 1, 64);
  cpu::rope_apply(norm, cs.data(), b.data(), 1, 64);
  CHECK(a != b);
}

TEST_CASE("rope with n_rot < head_dim rotates the first n_rot dims and copies the rest") {
  for (bool neox : {false, true}) {
    cpu::RopeParams p;
    p.n_rot = 32;
    p.neox = neox;
    p.freq_base = 10000.0f;
    for (int64_t pos : {1, 50, 2048}) check_rope(p, pos, 3, 128);
  }
}

TEST_CASE("rope with linear scaling and attn_factor") {
  cpu::RopeParams p;
  p.n_rot = 32;
  p.freq_scale = 0.25f;
  p.attn_factor = 0.7f;
  for (int64_t pos : {3, 1000}) check_rope(p, pos, 2, 32);
}

TEST_CASE("rope YaRN: extrapolated high frequencies, interpolated low ones, ramp and magnitude") {
  cpu::RopeParams p;
  p.n_rot = 64;
  p.freq_base = 10000.0f;
  p.freq_scale = 1.0f / 40.0f;
  p.ext_factor = 1.0f;
  p.n_ctx_orig = 4096;
  p.beta_fast = 32.0f;
  p.beta_slow = 1.0f;
  // The case covers all three regions: some pairs extrapolated, some interpolated, some in between.
  const RopeRef r = rope_reference(p, 1000);
  int n_extrap = 0, n_interp = 0, n_mixed = 0;
  for (size_t i = 0; i < r.theta.size(); ++i) {
    const double extrap = r.theta_extrap[i], interp = extrap * p.freq_scale;
    if (std::fabs(r.theta[i] - extrap) < 1e-12 * extrap) ++n_extrap;
    else if (std::fabs(r.theta[i] - interp) < 1e-12 * extrap) ++n_interp;
    else ++n_mixed;
  }
  CHECK(n_extrap > 0);
  CHECK(n_interp > 0);
  CHECK(n_mixed > 0);
  CHECK(r.mag[0] == doctest::Approx(1.0 + 0.1 * std::log(40.0)).epsilon(1e-6));

  for (bool neox : {false, true}) {
    p.neox = neox;
    for (int64_t pos : {0, 1, 100, 1000, 5000}) check_rope(p, pos, 2, 64);
  }
  // DeepSeek-style: attn_factor pre-divided by YaRN's magnitude leaves cos/sin of unit length.
  p.neox = false;
  p.n_rot = 16;
  p.attn_factor = 1.0f / (1.0f + 0.1f * std::log(40.0f));
  check_rope(p, 123, 1, 16);
  std::vector<float> cs(16);
  cpu::rope_cache(p, 123, cs.data());
  for (int i = 0; i < 16; i += 2) CHECK(std::hypot(cs[i], cs[i + 1]) == doctest::Approx(1.0).epsilon(1e-6));
}

TEST_CASE("softmax matches a double reference, is shift-stable and maps -inf to 0") {
  std::vector<float> x = randn(300, 7, 4.0f);
  x[10] = 1000.0f;
  x[11] = 999.0f;
  x[12] = -std::numeric_limits<float>::infinity();
  double mx = -1e300;
  for (float v : x) mx = std::max(mx, double(v));
  double den = 0;
  for (float v : x) den += std::exp(v - mx);
  std::vector<float> y = x;
  cpu::softmax(y.data(), static_cast<int64_t>(y.size()));
  double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(x[i] - mx) / den;
    CHECK(std::fabs(y[i] - ref) <= 1e-6 * ref + 1e-38);
    sum += y[i];
  }
  CHECK(y[12] == 0.0f);
  CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
}

TEST_CASE("silu and swiglu match x * sigmoid(x) in double") {
  std::vector<float> g = randn(1000, 8, 5.0f), u = randn(1000, 9);
  g[0] = -100.0f, g[1] = 100.0f, g[2] = 0.0f, g[3] = -1e-20f;
  std::vector<float> h(g.size());
  cpu::swiglu(g.data(), u.data(), h.data(), static_cast<int64_t>(g.size()));
  for (size_t i = 0; i < g.size(); ++i) {
    const double s = double(g[i]) / (1.0 + std::exp(-double(g[i])));
    CHECK(std::fabs(cpu::silu(g[i]) - s) <= 1e-6 * std::fabs(s) + 1e-37);
    CHECK(std::fabs(h[i] - s * u[i]) <= 2e-6 * std::fabs(s * u[i]) + 1e-37);
    CHECK(std::isfinite(h[i]));
  }
  std::vector<float> alias = g;  // h may alias g
  cpu::swiglu(alias.data(), u.data(), alias.data(), static_cast<int64_t>(g.size()));
  CHECK(alias == h);
}

TEST_CASE("attention: causal GQA (8 query heads over 2 KV heads) matches the naive reference") {
  AttnCase c;
  c.make(20);
  const std::vector<float> out = run_attention(c);
  const auto ref = c.reference();
  CHECK(max_abs_diff(out, ref) < 2e-6);

  // Heads split over two calls (as workers do) give the same bits as one call.
  std::vector<float> split(out.size(), -1.0f);
  std::vector<float> scratch(static_cast<size_t>(cpu::attention_scratch_floats(c.args(split.data()))));
  cpu::attention(c.args(split.data()), 0, 3, scratch.data());
  cpu::attention(c.args(split.data()), 3, c.n_head, scratch.data());
  CHECK(split == out);

  // The grouping matters: reading KV head h % n_head_kv instead of h / group would differ.
  AttnCase wrong = c;
  wrong.wrong_kv_map = true;
  CHECK(max_abs_diff(out, wrong.reference()) > 1e-2);

  // One token at a time (decode) over a cache gives the batched result for each position.
  for (int64_t t = 0; t < c.n_tokens; ++t) {
    AttnCase one = c;
    one.n_tokens = 1;
    one.pos0 = c.pos0 + t;
    one.q.assign(c.q.begin() + t * c.n_head * c.d_k, c.q.begin() + (t + 1) * c.n_head * c.d_k);
    const std::vector<float> o = run_attention(one);
    for (int64_t i = 0; i < c.n_head * c.d_v; ++i) CHECK(o[i] == doctest::Approx(out[t * c.n_head * c.d_v + i]).epsilon(1e-6));
  }
}

TEST_CASE("attention: sliding window keeps keys pos - window < j <= pos") {
  AttnCase c;
  c.n_tokens = 6;
  c.pos0 = 4;
  c.make(30);
  const auto full = c.reference();
  for (int64_t w : {1, 3, 7}) {
    CAPTURE(w);
    c.window = w;
    const auto ref = c.reference();
    const std::vector<float> out = run_attention(c);
    CHECK(max_abs_diff(out, ref) < 2e-6);
    CHECK(max_abs_diff(out, full) > 1e-3);  // the window changes the result
  }
  // window 1: each query sees only its own key, so the output is exactly that position's value.
  c.window = 1;
  const std::vector<float> out = run_attention(c);
  const int64_t group = c.n_head / c.n_head_kv;
  for (int64_t t = 0; t < c.n_tokens; ++t)
    for (int64_t h = 0; h < c.n_head; ++h)
      for (int64_t i = 0; i < c.d_v; ++i)
        CHECK(out[(t * c.n_head + h) * c.d_v + i] ==
              doctest::Approx(c.v[(c.pos0 + t) * c.v_stride + (h / group) * c.d_v + i]).epsilon(1e-6));
}

TEST_CASE("attention: sinks add exp(sink) to each softmax denominator") {
  AttnCase c;
  c.make(40);
  const auto plain = c.reference();
  c.sinks = true;
  const auto ref = c.reference();
  const std::vector<float> out = run_attention(c);
  CHECK(max_abs_diff(out, ref) < 2e-6);
  CHECK(max_abs_diff(out, plain) > 1e-2);
  // Head 1's dominant sink shrinks its output toward zero.
  double n1 = 0, n1_plain = 0;
  for (int64_t i = 0; i < c.d_v; ++i) {
    n1 += std::fabs(out[c.d_v + i]);
    n1_plain += std::fabs(plain[c.d_v + i]);
  }
  CHECK(n1 < 0.1 * n1_plain);
  // Sinks together with a window.
  c.window = 2;
  CHECK(max_abs_diff(run_attention(c), c.reference()) < 2e-6);
}

TEST_CASE("MLA: absorbed attention over the latent cache equals the naive decompressed form") {
  // Per head h: q = [q_nope (nope) | q_pe (rope)], k_j = [k_b[h]^T c_j | k_pe_j], v_j = v_b[h] c_j where
  // c_j [lora] is the cached latent and k_pe_j [rope] the shared rotated key. k_b[h]: [lora, nope],
  // v_b[h]: [vd, lora]. Absorbed: q_abs = [k_b[h] q_nope | q_pe] against cache rows [c_j | k_pe_j]
  // (one KV head), values = c_j, then out_h = v_b[h] . (sum_j p_j c_j).
  const int64_t nh = 4, nope = 8, rope = 4, lora = 16, vd = 8, n_tok = 5, pos0 = 2;
  const int64_t n_pos = pos0 + n_tok, kw = lora + rope, dq = nope + rope;
  const std::vector<float> q = randn(static_cast<size_t>(n_tok * nh * dq), 50);
  const std::vector<float> cache = randn(static_cast<size_t>(n_pos * kw), 51);  // rows [c_j | k_pe_j]
  const std::vector<float> k_b = randn(static_cast<size_t>(nh * lora * nope), 52, 0.5f);
  const std::vector<float> v_b = randn(static_cast<size_t>(nh * vd * lora), 53, 0.5f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(dq));

  // Absorbed form with the library's pieces (LinearExec for the per-head projections).
  sched::LinearExec lin;
  std::vector<float> qabs(static_cast<size_t>(n_tok * nh * kw));
  std::vector<float> nope_in(static_cast<size_t>(n_tok * nope)), lat_h(static_cast<size_t>(n_tok * lora));
  for (int64_t h = 0; h < nh; ++h) {
    for (int64_t t = 0; t < n_tok; ++t) std::copy_n(q.data() + (t * nh + h) * dq, nope, nope_in.data() + t * nope);
    lin(f32_weight(k_b, lora, nope, h * lora * nope), nope_in.data(), n_tok, lat_h.data());
    for (int64_t t = 0; t < n_tok; ++t) {
      std::copy_n(lat_h.data() + t * lora, lora, qabs.data() + (t * nh + h) * kw);
      std::copy_n(q.data() + (t * nh + h) * dq + nope, rope, qabs.data() + (t * nh + h) * kw + lora);
    }
  }
  cpu::AttentionArgs a;
  a.q = qabs.data();
  a.n_tokens = n_tok, a.n_head = nh, a.n_head_kv = 1, a.d_k = kw, a.d_v = lora;
  a.k = cache.data(), a.k_stride = kw, a.v = cache.data(), a.v_stride = kw;
  a.pos0 = pos0;
  a.scale = scale;
  std::vector<float> lat(static_cast<size_t>(n_tok * nh * lora));
  std::vector<float> scratch(static_cast<size_t>(cpu::attention_scratch_floats(a)));
  a.out = lat.data();
  cpu::attention(a, 0, nh, scratch.data());
  std::vector<float> absorbed(static_cast<size_t>(n_tok * nh * vd)), vo(static_cast<size_t>(n_tok * vd));
  for (int64_t h = 0; h < nh; ++h) {
    for (int64_t t = 0; t < n_tok; ++t) std::copy_n(lat.data() + (t * nh + h) * lora, lora, lat_h.data() + t * lora);
    lin(f32_weight(v_b, vd, lora, h * vd * lora), lat_h.data(), n_tok, vo.data());
    for (int64_t t = 0; t < n_tok; ++t) std::copy_n(vo.data() + t * vd, vd, absorbed.data() + (t * nh + h) * vd);
  }

  // Naive form in double: decompress k and v per head, then ordinary causal attention.
  std::vector<double> naive(absorbed.size(), 0.0);
  for (int64_t h = 0; h < nh; ++h) {
    const float* kb = k_b.data() + h * lora * nope;
    const float* vb = v_b.data() + h * vd * lora;
    std::vector<double> kh(static_cast<size_t>(n_pos * dq)), vh(static_cast<size_t>(n_pos * vd));
    for (int64_t j = 0; j < n_pos; ++j) {
      const float* c = cache.data() + j * kw;
      for (int64_t d = 0; d < nope; ++d) {
        double s = 0;
        for (int64_t r = 0; r < lora; ++r) s += double(kb[r * nope + d]) * c[r];
        kh[j * dq + d] = s;
      }
      for (int64_t d = 0; d < rope; ++d) kh[j * dq + nope + d] = c[lora + d];
      for (int64_t o = 0; o < vd; ++o) {
        double s = 0;
        for (int64_t r = 0; r < lora; ++r) s += double(vb[o * lora + r]) * c[r];
        vh[j * vd + o] = s;
      }
    }
    for (int64_t t = 0; t < n_tok; ++t) {
      const int64_t pos = pos0 + t;
      std::vector<double> s(static_cast<size_t>(pos + 1));
      for (int64_t j = 0; j <= pos; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < dq; ++d) dot += double(q[(t * nh + h) * dq + d]) * kh[j * dq + d];
        s[j] = dot * scale;
      }
      const double mx = *std::max_element(s.begin(), s.end());
      double den = 0;
      for (double x : s) den += std::exp(x - mx);
      for (int64_t j = 0; j <= pos; ++j)
        for (int64_t o = 0; o < vd; ++o) naive[(t * nh + h) * vd + o] += std::exp(s[j] - mx) / den * vh[j * vd + o];
    }
  }
  double scale_out = 0;
  for (double x : naive) scale_out = std::max(scale_out, std::fabs(x));
  CHECK(scale_out > 0.1);
  CHECK(max_abs_diff(absorbed, naive) < 1e-5 * std::max(1.0, scale_out));
}
