// Bit-exactness of the f32 operators against llama.cpp's own intermediate tensors (golden dump_p0: every
// graph node of prompt 0, see ../shared/models/README.md section 5.4). Each check feeds an op the dumped
// inputs and compares its output with the dumped result bit for bit: RMSNorm, RoPE (NEOX, NORM, YaRN),
// attention (GQA and MLA), softmax, SwiGLU, F32 mat-muls in both of ggml's orders (mul_mat batches ->
// tinyBLAS, single rows and mul_mat_id experts -> ggml_vec_dot_f32) and the router weights.
// Quantised mat-muls are not checked here (their order is the kernels' contract, vec_dot.hpp).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <string>
#include <vector>

#include "cpu/ops.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/hparams.hpp"
#include "scheduler/linear_exec.hpp"
#include "scheduler/router.hpp"
#include "runtime/models/weights.hpp"
#include "tests/models/golden_util.hpp"

using namespace moetier;
using moetier::test::shared_dir;

namespace {

/// The dumped tensors of one model's prompt 0.
class Dump {
 public:
  explicit Dump(const std::string& stem) : dir_(shared_dir() / "golden" / stem / "dump_p0") {
    index_ = test::read_json(dir_ / "index.json");
  }
  /// The `nth` tensor (0 = first) named `name` computed by `op`, as f32 or i32.
  test::NpyArray get(const std::string& name, const std::string& op, int nth = 0) const {
    for (const auto& t : index_["tensors"])
      if (t["name"] == name && t["op"] == op && nth-- == 0) return test::read_npy((dir_ / t["file"].get<std::string>()).string());
    FAIL("dump has no tensor ", name, " (", op, ")");
    return {};
  }
  int64_t n_tokens() const { return index_["n_tokens"]; }

 private:
  std::filesystem::path dir_;
  nlohmann::json index_;
};

int mismatches(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  int n = 0;
  for (size_t i = 0; i < got.size(); ++i) n += std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i]);
  return n;
}

struct Model {
  gguf::GgufModel g;
  models::ModelHparams hp;
  explicit Model(const std::string& stem)
      : g(gguf::GgufModel::open((shared_dir() / "models" / (stem + ".gguf")).string())),
        hp(models::load_hparams(g.metadata(), g.path())) {}
  std::string blk(int il, const char* name) const { return fmt::format("blk.{}.{}.weight", il, name); }
  cpu::RopeParams rope() const {
    cpu::RopeParams p;
    p.n_rot = static_cast<int>(hp.n_rot);
    p.neox = hp.rope_type == models::RopeType::Neox;
    p.freq_base = hp.rope_freq_base;
    p.freq_scale = hp.rope_freq_scale;
    if (hp.rope_yarn) {  // as arch_deepseek2.cpp
      p.ext_factor = 1.0f;
      p.n_ctx_orig = static_cast<int>(hp.yarn_orig_ctx);
      p.attn_factor = 1.0f / (1.0f + 0.1f * std::log(1.0f / hp.rope_freq_scale));
      p.beta_fast = hp.yarn_beta_fast;
      p.beta_slow = hp.yarn_beta_slow;
    }
    return p;
  }
};

/// x: [rows, n_heads, head_dim] rotated in place, row t at position t.
void rope_rows(const cpu::RopeParams& p, std::vector<float>& x, int64_t rows, int64_t n_heads, int64_t head_dim) {
  std::vector<float> cs(static_cast<size_t>(p.n_rot));
  for (int64_t t = 0; t < rows; ++t) {
    cpu::rope_cache(p, t, cs.data());
    cpu::rope_apply(p, cs.data(), x.data() + t * n_heads * head_dim, n_heads, head_dim);
  }
}

/// cpu::attention over a prompt at positions 0..n-1 with K/V rows per token; out as ggml's kqv
/// [n_head, n, d_v] (npy order).
std::vector<float> attention_like_ggml(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                       int64_t n, int64_t n_head, int64_t n_head_kv, int64_t d_k, int64_t d_v,
                                       int64_t v_stride, float scale) {
  cpu::AttentionArgs a;
  a.q = q.data();
  a.n_tokens = n, a.n_head = n_head, a.n_head_kv = n_head_kv, a.d_k = d_k, a.d_v = d_v;
  a.k = k.data(), a.k_stride = n_head_kv * d_k;
  a.v = v.data(), a.v_stride = v_stride;
  a.scale = scale;
  std::vector<float> out(static_cast<size_t>(n * n_head * d_v)), scratch(static_cast<size_t>(cpu::attention_scratch_floats(a)));
  a.out = out.data();
  cpu::attention(a, 0, n_head, scratch.data());
  std::vector<float> perm(out.size());
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < n_head; ++h)
      for (int64_t i = 0; i < d_v; ++i) perm[(h * n + t) * d_v + i] = out[(t * n_head + h) * d_v + i];
  return perm;
}

}  // namespace

TEST_CASE("ggml-exact ops: qwen3moe (NEOX RoPE, per-head QK norm, GQA, softmax router, SwiGLU)" *
          doctest::skip(test::no_shared())) {
  const std::string stem = "qwen3moe-tiny-q8_0";
  Model m(stem);
  Dump d(stem);
  const int64_t n = d.n_tokens(), E = m.hp.n_embd, H = m.hp.n_head, HKV = m.hp.n_head_kv, D = m.hp.head_dim_k;
  sched::LinearExec lin;
  for (int il = 0; il < m.hp.n_layer; ++il) {
    CAPTURE(il);
    const std::string s = fmt::format("-{}", il);
    const auto x = il == 0 ? d.get("embd", "GET_ROWS") : d.get(fmt::format("l_out-{}", il - 1), "ADD");
    std::vector<float> y(x.f32.size());
    for (int64_t t = 0; t < n; ++t) cpu::rms_norm(x.f32.data() + t * E, nullptr, y.data() + t * E, E, m.hp.rms_eps);
    CHECK(mismatches(y, d.get("norm" + s, "RMS_NORM").f32) == 0);

    const auto q = d.get("Qcur" + s, "MUL_MAT");
    y.assign(q.f32.size(), 0.0f);
    for (int64_t r = 0; r < n * H; ++r) cpu::rms_norm(q.f32.data() + r * D, nullptr, y.data() + r * D, D, m.hp.rms_eps);
    CHECK(mismatches(y, d.get("norm" + s, "RMS_NORM", 1).f32) == 0);

    std::vector<float> qr = d.get("Qcur_normed" + s, "MUL").f32;
    rope_rows(m.rope(), qr, n, H, D);
    CHECK(mismatches(qr, d.get("Qcur" + s, "ROPE").f32) == 0);

    const auto kr = d.get("Kcur" + s, "ROPE"), v = d.get("Vcur" + s, "MUL_MAT");
    const auto kqv = attention_like_ggml(d.get("Qcur" + s, "ROPE").f32, kr.f32, v.f32, n, H, HKV, D, D, HKV * D,
                                         1.0f / std::sqrt(static_cast<float>(D)));
    CHECK(mismatches(kqv, d.get("kqv" + s, "MUL_MAT").f32) == 0);

    // Router: F32 weights; tinyBLAS order for the prompt rows, vec_dot order for the last layer's one row.
    const auto fn = d.get("ffn_norm" + s, "MUL");
    const int64_t rows = static_cast<int64_t>(fn.f32.size()) / E, n_exp = m.hp.n_expert, k = m.hp.n_expert_used;
    std::vector<float> logits(static_cast<size_t>(rows * n_exp));
    lin(models::weight_2d(m.g, m.blk(il, "ffn_gate_inp"), n_exp, E), fn.f32.data(), rows, logits.data());
    const auto want_logits = d.get("ffn_moe_logits" + s, "MUL_MAT");
    CHECK(mismatches(logits, want_logits.f32) == 0);

    std::vector<float> probs = want_logits.f32;
    for (int64_t t = 0; t < rows; ++t) cpu::softmax(probs.data() + t * n_exp, n_exp);
    CHECK(mismatches(probs, d.get("ffn_moe_probs" + s, "SOFT_MAX").f32) == 0);

    sched::RouterConfig cfg;
    cfg.n_expert = n_exp, cfg.n_used = k, cfg.norm_topk = m.hp.norm_topk_prob;
    std::vector<int32_t> ids(static_cast<size_t>(rows * k));
    std::vector<float> wts(ids.size()), scratch(static_cast<size_t>(3 * n_exp + 64));
    for (int64_t t = 0; t < rows; ++t)
      sched::route_token(cfg, want_logits.f32.data() + t * n_exp, ids.data() + t * k, wts.data() + t * k, scratch.data());
    CHECK(ids == d.get("ffn_moe_topk" + s, "VIEW").i32);
    CHECK(mismatches(wts, d.get("ffn_moe_weights_norm" + s, "DIV").f32) == 0);

    const auto gate = d.get("ffn_moe_gate" + s, "MUL_MAT_ID"), up = d.get("ffn_moe_up" + s, "MUL_MAT_ID");
    std::vector<float> h(gate.f32.size());
    const int64_t n_ff = m.hp.n_ff_exp;
    for (size_t r = 0; r < h.size() / n_ff; ++r)
      cpu::swiglu(gate.f32.data() + r * n_ff, up.f32.data() + r * n_ff, h.data() + r * n_ff, n_ff);
    CHECK(mismatches(h, d.get("ffn_moe_swiglu" + s, "SWIGLU").f32) == 0);
  }
}

TEST_CASE("ggml-exact ops: mixtral F32 (NORM RoPE, tinyBLAS projections, vec_dot experts and output)" *
          doctest::skip(test::no_shared())) {
  const std::string stem = "mixtral-tiny-f32";
  Model m(stem);
  Dump d(stem);
  const int64_t n = d.n_tokens(), E = m.hp.n_embd, H = m.hp.n_head, HKV = m.hp.n_head_kv, D = m.hp.head_dim_k;
  sched::LinearExec lin;
  for (int il = 0; il < m.hp.n_layer; ++il) {
    CAPTURE(il);
    const std::string s = fmt::format("-{}", il);
    const auto an = d.get("attn_norm" + s, "MUL");
    std::vector<float> q(static_cast<size_t>(n * H * D));
    lin(models::weight_2d(m.g, m.blk(il, "attn_q"), H * D, E), an.f32.data(), n, q.data());
    CHECK(mismatches(q, d.get("Qcur" + s, "MUL_MAT").f32) == 0);
    rope_rows(m.rope(), q, n, H, D);
    CHECK(mismatches(q, d.get("Qcur" + s, "ROPE").f32) == 0);
    const auto kqv = attention_like_ggml(q, d.get("Kcur" + s, "ROPE").f32, d.get("Vcur" + s, "MUL_MAT").f32, n, H, HKV, D,
                                         D, HKV * D, 1.0f / std::sqrt(static_cast<float>(D)));
    CHECK(mismatches(kqv, d.get("kqv" + s, "MUL_MAT").f32) == 0);

    // Routed experts (ggml mul_mat_id): vec_dot order, whatever the number of rows an expert gets.
    const auto fn = d.get("ffn_norm" + s, "MUL"), topk = d.get("ffn_moe_topk" + s, "VIEW");
    const auto want_gate = d.get("ffn_moe_gate" + s, "MUL_MAT_ID");
    const int64_t rows = static_cast<int64_t>(fn.f32.size()) / E, k = m.hp.n_expert_used, n_ff = m.hp.n_ff_exp;
    const auto gate_exps = models::weight_3d(m.g, m.blk(il, "ffn_gate_exps"), m.hp.n_expert, n_ff, E);
    std::vector<float> got(want_gate.f32.size(), NAN), xs, ys;
    for (int32_t e = 0; e < m.hp.n_expert; ++e) {
      std::vector<int64_t> slots;
      for (int64_t i = 0; i < rows * k; ++i)
        if (topk.i32[i] == e) slots.push_back(i);
      if (slots.empty()) continue;
      xs.clear();
      for (int64_t sl : slots) xs.insert(xs.end(), fn.f32.begin() + (sl / k) * E, fn.f32.begin() + (sl / k + 1) * E);
      ys.assign(slots.size() * n_ff, 0.0f);
      lin(gate_exps.at(e), xs.data(), static_cast<int64_t>(slots.size()), ys.data(), cpu::F32Path::kVecDot);
      for (size_t r = 0; r < slots.size(); ++r) std::copy_n(ys.data() + r * n_ff, n_ff, got.data() + slots[r] * n_ff);
    }
    CHECK(mismatches(got, want_gate.f32) == 0);
  }
  // Output projection of the single last row: vec_dot order.
  const auto rn = d.get("result_norm", "MUL");
  std::vector<float> logits(static_cast<size_t>(m.hp.n_vocab));
  lin(models::weight_2d(m.g, "output.weight", m.hp.n_vocab, E), rn.f32.data(), 1, logits.data());
  CHECK(mismatches(logits, d.get("result_output", "MUL_MAT").f32) == 0);
}

TEST_CASE("ggml-exact ops: deepseek2 F32 (YaRN RoPE, MLA absorbed attention, sigmoid group routing)" *
          doctest::skip(test::no_shared())) {
  const std::string stem = "deepseek2-tiny-f32";
  Model m(stem);
  Dump d(stem);
  const auto& hp = m.hp;
  const int64_t n = d.n_tokens(), H = hp.n_head, nope = hp.qk_nope_dim, rope = hp.qk_rope_dim;
  const int64_t lora = hp.kv_lora_rank, vd = hp.v_head_dim_mla, dq = nope + rope, kw = lora + rope;
  sched::LinearExec lin;
  for (int il = 0; il < hp.n_layer; ++il) {
    CAPTURE(il);
    const std::string s = fmt::format("-{}", il);
    const auto q = d.get("q" + s, "MUL_MAT", 1);  // [n, H, dq] after attn_q_b
    std::vector<float> qpe(static_cast<size_t>(n * H * rope)), qn(static_cast<size_t>(n * nope));
    for (int64_t r = 0; r < n * H; ++r) std::copy_n(q.f32.data() + r * dq + nope, rope, qpe.data() + r * rope);
    rope_rows(m.rope(), qpe, n, H, rope);
    CHECK(mismatches(qpe, d.get("q_pe" + s, "ROPE").f32) == 0);

    // q_nope absorbed through k_b: ggml multiplies a non-contiguous view -> vec_dot order.
    const auto k_b = models::weight_3d(m.g, m.blk(il, "attn_k_b"), H, lora, nope);
    const auto v_b = models::weight_3d(m.g, m.blk(il, "attn_v_b"), H, vd, lora);
    std::vector<float> absorbed(static_cast<size_t>(H * n * lora)), ys(static_cast<size_t>(n * lora));
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t t = 0; t < n; ++t) std::copy_n(q.f32.data() + (t * H + h) * dq, nope, qn.data() + t * nope);
      lin(k_b.at(h), qn.data(), n, ys.data(), cpu::F32Path::kVecDot);
      std::copy(ys.begin(), ys.end(), absorbed.begin() + h * n * lora);
    }
    CHECK(mismatches(absorbed, d.get("q_nope_absorbed" + s, "MUL_MAT").f32) == 0);

    const float mscale = 1.0f + hp.yarn_log_mul * std::log(1.0f / hp.rope_freq_scale);
    const auto kcur = d.get("Kcur" + s, "CONCAT");
    const auto kqv = attention_like_ggml(d.get("Qcur" + s, "CONCAT").f32, kcur.f32, kcur.f32, n, H, 1, kw, lora, kw,
                                         mscale * mscale / std::sqrt(static_cast<float>(dq)));
    const auto want_kqv = d.get("kqv" + s, "MUL_MAT");
    CHECK(mismatches(kqv, want_kqv.f32) == 0);

    // Back through v_b: a contiguous batch -> tinyBLAS order.
    std::vector<float> out(static_cast<size_t>(H * n * vd)), vo(static_cast<size_t>(n * vd));
    for (int64_t h = 0; h < H; ++h) {
      lin(v_b.at(h), want_kqv.f32.data() + h * n * lora, n, vo.data());
      std::copy(vo.begin(), vo.end(), out.begin() + h * n * vd);
    }
    CHECK(mismatches(out, d.get("kqv_mla" + s, "MUL_MAT").f32) == 0);

    if (!hp.is_moe_layer(il)) continue;
    const auto logits = d.get("ffn_moe_logits" + s, "MUL_MAT");
    const int64_t n_exp = hp.n_expert, k = hp.n_expert_used, rows = static_cast<int64_t>(logits.f32.size()) / n_exp;
    sched::RouterConfig cfg;
    cfg.gating = hp.gating, cfg.n_expert = n_exp, cfg.n_used = k, cfg.n_groups = hp.n_expert_groups;
    cfg.n_group_used = hp.n_group_used, cfg.norm_topk = hp.norm_topk_prob, cfg.weights_scale = hp.expert_weights_scale;
    cfg.score_bias = models::vector_f32(m.g, fmt::format("blk.{}.exp_probs_b.bias", il), n_exp);
    std::vector<float> probs(logits.f32.size());
    for (int64_t t = 0; t < rows; ++t) sched::router_probs(cfg, logits.f32.data() + t * n_exp, probs.data() + t * n_exp);
    CHECK(mismatches(probs, d.get("ffn_moe_probs" + s, "SIGMOID").f32) == 0);
    std::vector<int32_t> ids(static_cast<size_t>(rows * k));
    std::vector<float> wts(ids.size()), scratch(static_cast<size_t>(3 * n_exp + 64));
    for (int64_t t = 0; t < rows; ++t)
      sched::route_token(cfg, logits.f32.data() + t * n_exp, ids.data() + t * k, wts.data() + t * k, scratch.data());
    CHECK(ids == d.get("ffn_moe_topk" + s, "VIEW").i32);
    CHECK(mismatches(wts, d.get("ffn_moe_weights_scaled" + s, "SCALE").f32) == 0);
  }
}
