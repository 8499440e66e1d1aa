// The table of hyper-parameter constraints. See hparams_check.hpp.
#include "runtime/models/hparams_check.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cmath>

#include "common/error.hpp"
#include "runtime/models/tensor_roles.hpp"

namespace moetier::models {

HparamsView::HparamsView(const ModelHparams& h, const gguf::Metadata& m, std::span<const gguf::TensorInfo> tensors)
    : hp(h), md(m) {
  by_name_.reserve(tensors.size());
  for (const auto& t : tensors) {
    by_name_.emplace(t.name, &t);
    const TensorClass c = classify_tensor(t.name);
    if (c.layer < 0) continue;
    layers_.insert(c.layer);
    if (c.role == TensorRole::RoutedExpert && c.expert >= 0 && c.part == FfnPart::Gate && !c.is_bias) {
      LegacyExperts& l = legacy_[c.layer];
      ++l.count;
      l.max_id = std::max<int64_t>(l.max_id, c.expert);
    }
  }
}

const gguf::TensorInfo* HparamsView::tensor(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

HparamsView::LegacyExperts HparamsView::legacy_experts(int32_t il) const {
  const auto it = legacy_.find(il);
  return it == legacy_.end() ? LegacyExperts{} : it->second;
}

namespace {

using fmt::format;
using Shape = std::vector<int64_t>;

/// a * b, saturating at INT64_MAX (factors are >= 0 where it is used).
int64_t mul(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}
int64_t add(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

std::string shape_str(const Shape& s) { return format("{{{}}}", fmt::join(s, ", ")); }
std::string blk(int64_t il, const char* name) { return format("blk.{}.{}.weight", il, name); }

/// The key a value came from: "<arch>.k" when the file has it, else "<arch>.k (absent: <fallback>)".
std::string named(const HparamsView& v, std::string_view k, std::string_view fallback) {
  return v.has_key(k) ? v.key(k) : format("{} (absent: {})", v.key(k), fallback);
}

std::string finite_positive(const HparamsView& v, std::string_view k, float x) {
  if (std::isfinite(x) && x > 0) return {};
  return format("{} is {} (expected a finite number > 0)", v.key(k), x);
}

/// "" when tensor `name` is absent or has shape `want`; else the mismatch with `why` (which keys made
/// `want`). Absent tensors are left to the weight binding (runtime/models/weights.hpp), which names them.
std::string expect_shape(const HparamsView& v, const std::string& name, const Shape& want, const std::string& why) {
  const gguf::TensorInfo* t = v.tensor(name);
  if (!t || t->shape == want) return {};
  return format("tensor {} has shape {}; expected {} from {}", name, shape_str(t->shape), shape_str(want), why);
}

bool is_mla(const HparamsView& v) { return v.hp.arch == Arch::Deepseek2; }

/// The key(s) the routed-expert width came from.
std::string expert_ffn_key(const HparamsView& v) {
  return v.has_key("expert_feed_forward_length") ? v.key("expert_feed_forward_length")
                                                 : named(v, "feed_forward_length", "0");
}

std::string shared_ffn_key(const HparamsView& v) {
  if (v.has_key("expert_shared_feed_forward_length")) return v.key("expert_shared_feed_forward_length");
  if (is_mla(v) || v.hp.arch == Arch::Glm4Moe)
    return format("{} {} x {}", v.key("expert_shared_count"), v.hp.n_expert_shared, expert_ffn_key(v));
  if (v.hp.arch == Arch::Qwen2Moe) return named(v, "expert_shared_feed_forward_length", "feed_forward_length");
  return named(v, "expert_shared_feed_forward_length", "the routed expert width");
}

// ---- the rules ------------------------------------------------------------------------------------

std::string context_length(const HparamsView& v) {
  const int64_t n = v.hp.n_ctx_train;
  if (n >= 1 && n <= INT32_MAX) return {};
  return format("{} is {} (expected 1..{})", v.key("context_length"), n, INT32_MAX);
}

/// x finite and in (lo, hi] (lo_open) or [lo, hi]; `why` says what a value out of range does.
std::string in_range(const HparamsView& v, std::string_view k, float x, double lo, bool lo_open, double hi,
                     const char* why) {
  if (std::isfinite(x) && (lo_open ? x > lo : x >= lo) && x <= hi) return {};
  return format("{} is {} (expected a finite number in {}{}, {}]; {})", v.key(k), x, lo_open ? "(" : "[", lo, hi, why);
}

std::string rms_eps(const HparamsView& v) {
  // Real models use 1e-6..1e-5; an epsilon like 1e38 scales every normalised row to ~0 (all logits 0).
  return in_range(v, "attention.layer_norm_rms_epsilon", v.hp.rms_eps, 0, true, 1,
                  "larger values flatten every normalised row to ~0");
}

std::string rope_freq_base(const HparamsView& v) { return finite_positive(v, "rope.freq_base", v.hp.rope_freq_base); }

std::string rope_scaling(const HparamsView& v) {
  // Real models scale the context by up to ~64; 1e6 keeps the frequency scale far from underflowing to 0.
  if (const auto f = v.md.get_float(v.key("rope.scaling.factor")); f && !(std::isfinite(*f) && *f >= 0 && *f <= 1e6))
    return format("{} is {} (expected a finite number in [0, 1e6]; 0: no scaling)", v.key("rope.scaling.factor"),
                  static_cast<float>(*f));
  if (std::isfinite(v.hp.rope_freq_scale) && v.hp.rope_freq_scale > 0) return {};
  return format("{} gives the frequency scale {} (expected a finite number > 0)", v.key("rope.scaling.factor"),
                v.hp.rope_freq_scale);
}

std::string yarn(const HparamsView& v) {
  const ModelHparams& hp = v.hp;
  if (!hp.rope_yarn) return {};
  if (hp.yarn_orig_ctx < 1 || hp.yarn_orig_ctx > INT32_MAX)
    return format("{} is {} (expected 1..{})", named(v, "rope.scaling.original_context_length", "context_length"),
                  hp.yarn_orig_ctx, INT32_MAX);
  // DeepSeek's is 0.1 x mscale_all_dim (~0.07-0.1); the attention scale grows with its square.
  if (std::string e = in_range(v, "rope.scaling.yarn_log_multiplier", hp.yarn_log_mul, 0, false, 10,
                               "the attention scale grows with its square");
      !e.empty())
    return e;
  if (std::string e = finite_positive(v, "rope.scaling.yarn_beta_fast", hp.yarn_beta_fast); !e.empty()) return e;
  return finite_positive(v, "rope.scaling.yarn_beta_slow", hp.yarn_beta_slow);
}

std::string sliding_window(const HparamsView& v) {
  // gpt-oss: llama.cpp requires the key (n_swa); a window of 0 would mask every key of the sliding layers.
  if (v.hp.arch != Arch::GptOss) return {};
  if (!v.has_key("attention.sliding_window"))
    return format("{} is absent (gpt-oss needs the window of its sliding-window layers)",
                  v.key("attention.sliding_window"));
  const int64_t w = v.hp.sliding_window;
  if (w >= 1 && w <= INT32_MAX) return {};
  return format("{} is {} (expected 1..{})", v.key("attention.sliding_window"), w, INT32_MAX);
}

std::string expert_weights_scale(const HparamsView& v) {
  // Real models use 1..2.8; 1e38 overflows the expert sum, and the next norm turns it into ~0.
  return in_range(v, "expert_weights_scale", v.hp.expert_weights_scale, 0, true, 1000,
                  "larger values overflow the expert sum");
}

std::string head_dims(const HparamsView& v) {
  const ModelHparams& hp = v.hp;
  const std::string k = is_mla(v) ? named(v, "attention.key_length_mla", "attention.key_length")
                                  : named(v, "attention.key_length", "embedding_length / head_count");
  const std::string val = is_mla(v) ? named(v, "attention.value_length_mla", "attention.value_length")
                                    : named(v, "attention.value_length", "embedding_length / head_count");
  if (hp.head_dim_k < 1) return format("{} is {} (expected >= 1)", k, hp.head_dim_k);
  if (hp.head_dim_v < 1) return format("{} is {} (expected >= 1)", val, hp.head_dim_v);
  return {};
}

std::string head_count_kv(const HparamsView& v) {
  const ModelHparams& hp = v.hp;
  if (hp.n_head_kv >= 1 && hp.n_head % hp.n_head_kv == 0) return {};
  return format("{} is {}, which does not divide {} {} (expected a divisor of the query head count)",
                named(v, "attention.head_count_kv", "head_count"), hp.n_head_kv, v.key("attention.head_count"),
                hp.n_head);
}

std::string rope_dims(const HparamsView& v) {
  const ModelHparams& hp = v.hp;
  const std::string k = named(v, "rope.dimension_count", "the head dimension");
  if (is_mla(v)) {
    // MLA rotates qk_rope_dim = rope.dimension_count dims of each key; the other qk_nope_dim are not rotated.
    if (hp.n_rot >= 2 && hp.n_rot % 2 == 0 && hp.qk_nope_dim >= 1) return {};
    return format(
        "{} is {} but the MLA key width {} is {} (expected an even number 2..{}: the rotated part "
        "of each key, leaving a non-rotated part)",
        k, hp.n_rot, named(v, "attention.key_length_mla", "attention.key_length"), hp.head_dim_k, hp.head_dim_k - 1);
  }
  if (hp.n_rot >= 2 && hp.n_rot % 2 == 0 && hp.n_rot <= hp.head_dim_k) return {};
  return format("{} is {} but the head dimension {} is {} (expected an even number 2..{})", k, hp.n_rot,
                named(v, "attention.key_length", "embedding_length / head_count"), hp.head_dim_k, hp.head_dim_k);
}

std::string expert_used_count(const HparamsView& v) {
  const ModelHparams& hp = v.hp;
  if (hp.n_expert < 0) return format("{} is {} (expected >= 0)", v.key("expert_count"), hp.n_expert);
  if (hp.n_expert == 0) {
    if (hp.n_expert_used == 0) return {};
    return format("{} is {} but {} is 0 or absent (a model without experts uses none)", v.key("expert_used_count"),
                  hp.n_expert_used, v.key("expert_count"));
  }
  if (hp.n_expert_used >= 1 && hp.n_expert_used <= hp.n_expert) return {};
  return format("{} is {} (expected 1..{} = {})", named(v, "expert_used_count", "0"), hp.n_expert_used, hp.n_expert,
                v.key("expert_count"));
}

std::string expert_groups(const HparamsView& v) {
  const ModelHparams& hp = v.hp;
  if (hp.n_expert == 0 || hp.n_expert_groups <= 1) return {};
  const std::string g = v.key("expert_group_count"), gu = named(v, "expert_group_used_count", "expert_group_count");
  if (hp.n_expert_groups > 64) return format("{} is {} (the router supports at most 64 groups)", g, hp.n_expert_groups);
  if (hp.n_expert % hp.n_expert_groups != 0)
    return format("{} is {}, which does not divide {} {}", g, hp.n_expert_groups, v.key("expert_count"), hp.n_expert);
  if (hp.n_group_used < 1 || hp.n_group_used > hp.n_expert_groups)
    return format("{} is {} (expected 1..{} = {})", gu, hp.n_group_used, hp.n_expert_groups, g);
  const int64_t kept = hp.n_group_used * (hp.n_expert / hp.n_expert_groups);
  if (hp.n_expert_used <= kept) return {};
  return format("{} is {} but the {} kept groups ({}) hold only {} experts", v.key("expert_used_count"),
                hp.n_expert_used, hp.n_group_used, gu, kept);
}

std::string leading_dense_block_count(const HparamsView& v) {
  const ModelHparams& hp = v.hp;
  const int64_t lead = hp.n_layer_dense_lead;
  if (lead >= 0 && (hp.n_expert == 0 || lead < hp.n_layer)) return {};
  return format("{} is {} (expected 0..{} - 1 = {}: at least one MoE layer)", v.key("leading_dense_block_count"), lead,
                v.key("block_count"), hp.n_layer - 1);
}

std::string nextn_predict_layers(const HparamsView& v) {
  const int64_t nextn = v.hp.n_layer_nextn, blocks = v.md.get_int(v.key("block_count")).value_or(0);
  if (nextn >= 0 && nextn < blocks) return {};
  return format("{} is {} (expected 0..{} - 1 = {}: the trailing NextN layers, at least one layer left to run)",
                v.key("nextn_predict_layers"), nextn, v.key("block_count"), blocks - 1);
}

std::string block_count(const HparamsView& v) {
  const std::set<int32_t>& layers = v.layers_present();
  // block_count as written: the layers run plus the trailing NextN layers (glm4moe), which the file holds too.
  const int64_t n = static_cast<int64_t>(layers.size()), n_layer = v.hp.n_layer + v.hp.n_layer_nextn;
  const std::string k = v.key("block_count");
  if (layers.empty()) return format("{} is {} but the file has no blk.N.* tensors", k, n_layer);
  if (*layers.rbegin() != n - 1) {
    int32_t missing = 0;
    while (layers.count(missing)) ++missing;
    return format(
        "{} is {} but the layers' tensors are not numbered 0..{}: there are blk.{}.* tensors and no "
        "blk.{}.* tensor",
        k, n_layer, n - 1, *layers.rbegin(), missing);
  }
  if (n == n_layer) return {};
  return format("{} is {} but the file has tensors for {} layers (blk.0 to blk.{}){}", k, n_layer, n, n - 1,
                n_layer > n ? format("; no tensor blk.{}.*", n) : std::string());
}

std::string token_embedding(const HparamsView& v) {
  const gguf::TensorInfo* t = v.tensor("token_embd.weight");
  if (!t) return "missing tensor token_embd.weight (the token embedding)";
  if (t->shape.size() == 2 && t->shape[1] == v.hp.n_embd) return {};
  return format("{} is {} but tensor token_embd.weight has shape {} (expected {{n_vocab, {}}})",
                v.key("embedding_length"), v.hp.n_embd, shape_str(t->shape), v.hp.n_embd);
}

std::string vocab_size(const HparamsView& v) {
  const int64_t rows = v.tensor("token_embd.weight")->shape[0];
  if (v.hp.n_vocab == 0 || v.hp.n_vocab == rows) return {};
  const std::string k = v.has_key("vocab_size") ? v.key("vocab_size") : "the token count of tokenizer.ggml.tokens";
  return format("{} is {} but tensor token_embd.weight has {} rows (shape {})", k, v.hp.n_vocab, rows,
                shape_str(v.tensor("token_embd.weight")->shape));
}

std::string tokenizer_tokens(const HparamsView& v) {
  const std::vector<std::string>* toks = v.md.get_string_array("tokenizer.ggml.tokens");
  const int64_t rows = v.tensor("token_embd.weight")->shape[0];
  if (!toks || static_cast<int64_t>(toks->size()) == rows) return {};
  return format("tokenizer.ggml.tokens has {} tokens but tensor token_embd.weight has {} rows (one per token)",
                toks->size(), rows);
}

std::string output_shape(const HparamsView& v) {
  const Shape want = {v.tensor("token_embd.weight")->shape[0], v.hp.n_embd};
  return expect_shape(v, "output.weight", want, "the vocabulary (token_embd.weight's rows) and embedding_length");
}

std::string attention_shapes(const HparamsView& v) {
  if (is_mla(v)) return {};
  const ModelHparams& hp = v.hp;
  const int64_t nq = mul(hp.n_head, hp.head_dim_k), nk = mul(hp.n_head_kv, hp.head_dim_k);
  const int64_t nv = mul(hp.n_head_kv, hp.head_dim_v), no = mul(hp.n_head, hp.head_dim_v);
  const std::string h = format("{} {}", v.key("attention.head_count"), hp.n_head);
  const std::string hkv = format("{} {}", named(v, "attention.head_count_kv", "head_count"), hp.n_head_kv);
  const std::string dk =
      format("{} {}", named(v, "attention.key_length", "embedding_length / head_count"), hp.head_dim_k);
  const std::string dv =
      format("{} {}", named(v, "attention.value_length", "embedding_length / head_count"), hp.head_dim_v);
  const std::string e = format("{} {}", v.key("embedding_length"), hp.n_embd);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    // Required here (not only when binding): they tie the head counts and widths that size the KV cache,
    // which `inspect` reports.
    for (const char* t : {"attn_q", "attn_k", "attn_v", "attn_output"})
      if (!v.tensor(blk(il, t))) return format("missing tensor {} (attention of layer {})", blk(il, t), il);
    for (std::string r : {expect_shape(v, blk(il, "attn_q"), {nq, hp.n_embd}, format("{} x {}, {}", h, dk, e)),
                          expect_shape(v, blk(il, "attn_k"), {nk, hp.n_embd}, format("{} x {}, {}", hkv, dk, e)),
                          expect_shape(v, blk(il, "attn_v"), {nv, hp.n_embd}, format("{} x {}, {}", hkv, dv, e)),
                          expect_shape(v, blk(il, "attn_output"), {hp.n_embd, no}, format("{}, {} x {}", e, h, dv))})
      if (!r.empty()) return r;
  }
  return {};
}

std::string mla_q_lora_rank(const HparamsView& v) {
  if (!is_mla(v)) return {};
  const ModelHparams& hp = v.hp;
  const int64_t nq = mul(hp.n_head, add(hp.qk_nope_dim, hp.qk_rope_dim));
  const std::string r = format("{} {}", named(v, "attention.q_lora_rank", "0, no q compression"), hp.q_lora_rank);
  const std::string heads = format("{} {} x key width {}", v.key("attention.head_count"), hp.n_head, hp.head_dim_k);
  const std::string e = format("{} {}", v.key("embedding_length"), hp.n_embd);
  if (hp.q_lora_rank < 0) return format("{} (expected >= 0)", r);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    if (hp.q_lora_rank == 0) {
      if (v.tensor(blk(il, "attn_q_a")) && !v.tensor(blk(il, "attn_q")))
        return format("{} but the file has tensor {} (a compressed query) and no {}", r, blk(il, "attn_q_a"),
                      blk(il, "attn_q"));
      if (auto s = expect_shape(v, blk(il, "attn_q"), {nq, hp.n_embd}, format("{}, {}", heads, e)); !s.empty())
        return s;
      continue;
    }
    for (std::string s : {expect_shape(v, blk(il, "attn_q_a"), {hp.q_lora_rank, hp.n_embd}, format("{}, {}", r, e)),
                          expect_shape(v, blk(il, "attn_q_b"), {nq, hp.q_lora_rank}, format("{}, {}", heads, r))})
      if (!s.empty()) return s;
  }
  return {};
}

std::string mla_kv_lora_rank(const HparamsView& v) {
  if (!is_mla(v)) return {};
  const ModelHparams& hp = v.hp;
  const std::string r = format("{} {}", v.key("attention.kv_lora_rank"), hp.kv_lora_rank);
  const std::string rope = format("{} {}", v.key("rope.dimension_count"), hp.qk_rope_dim);
  const std::string nope = format("key width {} - rope {}", hp.head_dim_k, hp.qk_rope_dim);
  const std::string vd =
      format("{} {}", named(v, "attention.value_length_mla", "attention.value_length"), hp.v_head_dim_mla);
  const std::string h = format("{} {}", v.key("attention.head_count"), hp.n_head);
  const std::string e = format("{} {}", v.key("embedding_length"), hp.n_embd);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    // attn_kv_a_mqa ties kv_lora_rank + rope dims, the KV-cache row that `inspect` reports.
    if (!v.tensor(blk(il, "attn_kv_a_mqa")))
      return format("missing tensor {} (MLA attention of layer {})", blk(il, "attn_kv_a_mqa"), il);
    for (std::string s : {expect_shape(v, blk(il, "attn_kv_a_mqa"), {add(hp.kv_lora_rank, hp.qk_rope_dim), hp.n_embd},
                                       format("{} + {}, {}", r, rope, e)),
                          expect_shape(v, blk(il, "attn_k_b"), {hp.n_head, hp.kv_lora_rank, hp.qk_nope_dim},
                                       format("{}, {}, {}", h, r, nope)),
                          expect_shape(v, blk(il, "attn_v_b"), {hp.n_head, hp.v_head_dim_mla, hp.kv_lora_rank},
                                       format("{}, {}, {}", h, vd, r)),
                          expect_shape(v, blk(il, "attn_output"), {hp.n_embd, mul(hp.n_head, hp.v_head_dim_mla)},
                                       format("{}, {} x {}", e, h, vd))})
      if (!s.empty()) return s;
  }
  return {};
}

std::string moe_layers(const HparamsView& v) {
  const ModelHparams& hp = v.hp;
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    const bool router = v.tensor(blk(il, "ffn_gate_inp")) != nullptr;
    if (router == hp.is_moe_layer(il)) continue;
    if (!router)
      return format("blk.{} is a MoE layer ({} {}, {} {}) but tensor {} (its router) is missing", il,
                    v.key("expert_count"), hp.n_expert, named(v, "leading_dense_block_count", "0"),
                    hp.n_layer_dense_lead, blk(il, "ffn_gate_inp"));
    if (hp.n_expert == 0)
      return format("{} is 0 or absent but tensor {} exists (a MoE layer's router)", v.key("expert_count"),
                    blk(il, "ffn_gate_inp"));
    return format("{} is {} but blk.{} has tensor {} (a MoE layer's router; expected a dense FFN)",
                  v.key("leading_dense_block_count"), hp.n_layer_dense_lead, il, blk(il, "ffn_gate_inp"));
  }
  return {};
}

std::string expert_count(const HparamsView& v) {
  const ModelHparams& hp = v.hp;
  const std::string k = format("{} {}", v.key("expert_count"), hp.n_expert);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    if (!hp.is_moe_layer(il)) continue;
    const std::string router = blk(il, "ffn_gate_inp");
    const gguf::TensorInfo* r = v.tensor(router);
    if (r->shape.size() != 2 || r->shape[0] != hp.n_expert)
      return format("{} but tensor {} (the router) has shape {} (expected {{{}, {}}})", k, router, shape_str(r->shape),
                    hp.n_expert, hp.n_embd);
    bool stacked = false;
    for (const char* part : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}) {
      const gguf::TensorInfo* t = v.tensor(blk(il, part));
      if (!t) continue;
      stacked = true;
      if (t->shape.size() != 3)
        return format("{} but tensor {} has shape {} (expected {{{}, n_out, n_in}})", k, blk(il, part),
                      shape_str(t->shape), hp.n_expert);
      if (t->shape[0] != hp.n_expert)
        return format("{} but tensor {} holds {} experts (shape {}; expected {})", k, blk(il, part), t->shape[0],
                      shape_str(t->shape), shape_str({hp.n_expert, t->shape[1], t->shape[2]}));
    }
    if (stacked) continue;
    const HparamsView::LegacyExperts legacy = v.legacy_experts(static_cast<int32_t>(il));
    if (legacy.count == 0)
      return format("missing tensor {} (the routed experts of layer {}; {})", blk(il, "ffn_gate_exps"), il, k);
    if (legacy.count != hp.n_expert || legacy.max_id != hp.n_expert - 1)
      return format(
          "{} but layer {} has {} per-expert tensors blk.{}.ffn_gate.E.weight (E up to {}; expected E = "
          "0..{})",
          k, il, legacy.count, il, legacy.max_id, hp.n_expert - 1);
  }
  return {};
}

std::string expert_ffn_length(const HparamsView& v) {
  const ModelHparams& hp = v.hp;
  const int64_t f = hp.n_ff_exp, e = hp.n_embd;
  const std::string why = format("{} {}, {} {}", expert_ffn_key(v), f, v.key("embedding_length"), e);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    if (!hp.is_moe_layer(il)) continue;
    const int64_t n = hp.n_expert;
    for (std::string s : {expect_shape(v, blk(il, "ffn_gate_exps"), {n, f, e}, why),
                          expect_shape(v, blk(il, "ffn_up_exps"), {n, f, e}, why),
                          expect_shape(v, blk(il, "ffn_down_exps"), {n, e, f}, why),
                          expect_shape(v, format("blk.{}.ffn_gate.0.weight", il), {f, e}, why),
                          expect_shape(v, format("blk.{}.ffn_up.0.weight", il), {f, e}, why),
                          expect_shape(v, format("blk.{}.ffn_down.0.weight", il), {e, f}, why)})
      if (!s.empty()) return s;
  }
  return {};
}

std::string dense_ffn_length(const HparamsView& v) {
  const ModelHparams& hp = v.hp;
  const int64_t f = hp.n_ff, e = hp.n_embd;
  const std::string why = format("{} {}, {} {}", named(v, "feed_forward_length", "0"), f, v.key("embedding_length"), e);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    if (hp.is_moe_layer(il)) continue;
    for (std::string s :
         {expect_shape(v, blk(il, "ffn_gate"), {f, e}, why), expect_shape(v, blk(il, "ffn_up"), {f, e}, why),
          expect_shape(v, blk(il, "ffn_down"), {e, f}, why)})
      if (!s.empty()) return s;
  }
  return {};
}

std::string shared_ffn_length(const HparamsView& v) {
  const ModelHparams& hp = v.hp;
  const int64_t f = hp.n_ff_shexp, e = hp.n_embd;
  const std::string why = format("{} = {}, {} {}", shared_ffn_key(v), f, v.key("embedding_length"), e);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    if (!hp.is_moe_layer(il) || !v.tensor(blk(il, "ffn_gate_shexp"))) continue;
    for (std::string s : {expect_shape(v, blk(il, "ffn_gate_shexp"), {f, e}, why),
                          expect_shape(v, blk(il, "ffn_up_shexp"), {f, e}, why),
                          expect_shape(v, blk(il, "ffn_down_shexp"), {e, f}, why)})
      if (!s.empty()) return s;
  }
  return {};
}

// clang-format off
const HparamRule kRules[] = {
    // Numbers read from metadata alone.
    {"context_length", "context_length in 1..2^31-1", context_length},
    {"rms_eps", "attention.layer_norm_rms_epsilon finite, in (0, 1]", rms_eps},
    {"rope_freq_base", "rope.freq_base finite and > 0", rope_freq_base},
    {"rope_scaling", "rope.scaling.factor finite, in [0, 1e6]; the frequency scale it gives finite and > 0", rope_scaling},
    {"yarn", "YaRN: original_context_length in 1..2^31-1, yarn_log_multiplier finite, in [0, 10], beta_fast / beta_slow finite and > 0", yarn},
    {"expert_weights_scale", "expert_weights_scale finite, in (0, 1000]", expert_weights_scale},
    {"sliding_window", "gpt-oss: attention.sliding_window present, in 1..2^31-1", sliding_window},
    // Dimensions among themselves.
    {"head_dims", "per-head key and value widths >= 1", head_dims},
    {"head_count_kv", "head_count_kv >= 1 and divides head_count", head_count_kv},
    {"rope_dims", "rope.dimension_count even, >= 2, <= the head dimension (MLA: < key_length_mla)", rope_dims},
    {"expert_used_count", "expert_used_count in 1..expert_count (0 without experts)", expert_used_count},
    {"expert_groups", "grouped routing: groups <= 64 divide expert_count, 1 <= used groups <= groups, the kept groups hold >= expert_used_count experts", expert_groups},
    {"nextn_predict_layers", "nextn_predict_layers (glm4moe) in 0..block_count-1", nextn_predict_layers},
    {"leading_dense_block_count", "leading_dense_block_count in 0..block_count-1 (a MoE model has a MoE layer)", leading_dense_block_count},
    // Against the tensors of the file.
    {"block_count", "block_count = the number of blk.N layers present, numbered 0..block_count-1", block_count},
    {"token_embedding", "token_embd.weight present, {n_vocab, embedding_length}", token_embedding},
    {"vocab_size", "vocab_size (or the tokenizer's token count) = token_embd.weight's rows", vocab_size},
    {"tokenizer_tokens", "tokenizer.ggml.tokens has one token per row of token_embd.weight", tokenizer_tokens},
    {"output", "output.weight (if present) has token_embd.weight's shape", output_shape},
    {"attention_shapes", "attn_q rows = head_count x key_length, attn_k / attn_v rows = head_count_kv x key / value_length, attn_output columns = head_count x value_length", attention_shapes},
    {"mla_q_lora_rank", "MLA: q_lora_rank = attn_q_a's rows = attn_q_b's columns (0: attn_q); query rows = head_count x key_length_mla", mla_q_lora_rank},
    {"mla_kv_lora_rank", "MLA: attn_kv_a_mqa rows = kv_lora_rank + rope dims; attn_k_b {heads, kv_lora_rank, key_length_mla - rope}, attn_v_b {heads, value_length_mla, kv_lora_rank}", mla_kv_lora_rank},
    {"moe_layers", "a layer has a router (ffn_gate_inp) exactly when expert_count > 0 and it is not a leading dense layer", moe_layers},
    {"expert_count", "expert_count = router rows = ne[2] of the stacked ffn_*_exps (or the number of per-expert tensors)", expert_count},
    {"expert_ffn_length", "expert_feed_forward_length (default feed_forward_length) = the routed experts' width", expert_ffn_length},
    {"dense_ffn_length", "feed_forward_length = the dense FFN width", dense_ffn_length},
    {"shared_ffn_length", "the shared-expert width (expert_shared_feed_forward_length; deepseek2: expert_shared_count x expert width) = ffn_*_shexp's", shared_ffn_length},
};
// clang-format on

}  // namespace

std::span<const HparamRule> hparam_rules() { return kRules; }

std::optional<HparamViolation> first_hparam_violation(const ModelHparams& hp, const gguf::Metadata& md,
                                                      std::span<const gguf::TensorInfo> tensors) {
  const HparamsView v(hp, md, tensors);
  for (const HparamRule& r : kRules)
    if (std::string msg = r.check(v); !msg.empty()) return HparamViolation{r.id, std::move(msg)};
  return std::nullopt;
}

void check_hparams(const ModelHparams& hp, const gguf::Metadata& md, std::span<const gguf::TensorInfo> tensors,
                   const std::string& file) {
  if (auto bad = first_hparam_violation(hp, md, tensors)) fail("{}: {}", file, bad->message);
}

ModelHparams load_checked_hparams(const gguf::Metadata& md, std::span<const gguf::TensorInfo> tensors,
                                  const std::string& file) {
  ModelHparams hp = load_hparams(md, file);
  check_hparams(hp, md, tensors, file);
  return hp;
}

}  // namespace moetier::models
