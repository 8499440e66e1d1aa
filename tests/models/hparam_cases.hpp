// Hostile-model cases for the hyper-parameter table (runtime/models/hparams_check.hpp): a tiny `moetier
// synth` preset with one metadata key or one tensor changed, the rule expected to reject it, and the
// fragments (keys, tensors, values) its one-line message must hold. Shared by test_hparams_check.cpp
// (the rule that fires, load_model's error, no large allocation) and test_hostile_models.cpp (`moetier
// run` and `moetier inspect` exit 1 with that line, never a crash).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "runtime/gguf/gguf_value.hpp"
#include "runtime/synth/synth_model.hpp"

namespace moetier::test {

/// The synth preset `name` with F32 weights drawn from `seed` (described, nothing written yet).
inline synth::SynthModel f32_preset(const std::string& name, uint64_t seed) {
  synth::SynthOptions o;
  o.preset = name;
  o.type = GgmlType::F32;
  o.seed = seed;
  return synth::build_synth_model(o);
}

/// Sets (or adds) metadata key `key`. (Not inlined: inlined into callers whose Value alternative is
/// known, g++ 12 warns about the inactive shared_ptr alternative of the variant, a false positive.)
[[gnu::noinline]] inline void set_key(synth::SynthModel& m, const std::string& key, gguf::Value v) {
  auto it = std::find_if(m.metadata.begin(), m.metadata.end(), [&](const auto& kv) { return kv.first == key; });
  if (it == m.metadata.end()) m.metadata.emplace_back(key, std::move(v));
  else it->second = std::move(v);
}
inline void set_uint(synth::SynthModel& m, const std::string& key, uint64_t v) {
  set_key(m, key, gguf::Value{v > 0xFFFFFFFFu ? gguf::ValueType::UINT64 : gguf::ValueType::UINT32, v});
}
inline void set_float(synth::SynthModel& m, const std::string& key, double v) {
  set_key(m, key, gguf::Value{gguf::ValueType::FLOAT32, v});
}
inline void drop_key(synth::SynthModel& m, const std::string& key) {
  const auto n = std::erase_if(m.metadata, [&](const auto& kv) { return kv.first == key; });
  REQUIRE_MESSAGE(n == 1, "preset has no key " << key);
}

inline synth::SynthTensor& find_tensor(synth::SynthModel& m, const std::string& name) {
  auto it = std::find_if(m.tensors.begin(), m.tensors.end(), [&](const auto& t) { return t.name == name; });
  REQUIRE_MESSAGE(it != m.tensors.end(), "preset has no tensor " << name);
  return *it;
}
inline void set_shape(synth::SynthModel& m, const std::string& name, std::vector<int64_t> shape) {
  find_tensor(m, name).shape = std::move(shape);
}
inline void drop_tensor(synth::SynthModel& m, const std::string& name) {
  (void)find_tensor(m, name);
  std::erase_if(m.tensors, [&](const auto& t) { return t.name == name; });
}

/// Replaces the stacked experts of layer `il` by the legacy layout with `n` per-expert tensors
/// blk.il.ffn_{gate,up,down}.E.weight (E = 0..n-1).
inline void to_legacy_experts(synth::SynthModel& m, int il, int n) {
  const std::string p = "blk." + std::to_string(il) + ".";
  for (const char* part : {"ffn_gate", "ffn_up", "ffn_down"}) {
    const synth::SynthTensor t = find_tensor(m, p + part + "_exps.weight");
    drop_tensor(m, t.name);
    for (int e = 0; e < n; ++e) {
      synth::SynthTensor x = t;
      x.name = p + part + "." + std::to_string(e) + ".weight";
      x.shape = {t.shape[1], t.shape[2]};
      m.tensors.push_back(x);
    }
  }
}

struct HparamCase {
  const char* rule;    // HparamRule::id expected to fire
  const char* preset;  // tiny synth preset patched
  std::function<void(synth::SynthModel&)> patch;
  std::vector<std::string> parts;  // the message holds each
};

/// At least one case per rule of hparam_rules() (test_hparams_check.cpp checks the coverage).
inline std::vector<HparamCase> hparam_cases() {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  using M = synth::SynthModel;
  auto u = [](const char* key, uint64_t v) { return [=](M& m) { set_uint(m, key, v); }; };
  auto f = [](const char* key, double v) { return [=](M& m) { set_float(m, key, v); }; };
  const uint64_t k2p32m1 = 0xFFFFFFFFu;
  // clang-format off: one case per line (rule, preset, patch, message parts)
  return {
      {"context_length", "tiny-mixtral", u("llama.context_length", 0), {"llama.context_length", "0"}},
      {"context_length", "tiny-mixtral", u("llama.context_length", uint64_t{1} << 40), {"llama.context_length"}},
      {"rms_eps", "tiny-mixtral", f("llama.attention.layer_norm_rms_epsilon", nan), {"llama.attention.layer_norm_rms_epsilon", "nan"}},
      {"rms_eps", "tiny-mixtral", f("llama.attention.layer_norm_rms_epsilon", -1), {"llama.attention.layer_norm_rms_epsilon", "-1"}},
      {"rms_eps", "tiny-qwen3moe", f("qwen3moe.attention.layer_norm_rms_epsilon", 0), {"qwen3moe.attention.layer_norm_rms_epsilon"}},
      {"rms_eps", "tiny-mixtral", f("llama.attention.layer_norm_rms_epsilon", 1e300), {"llama.attention.layer_norm_rms_epsilon", "inf"}},
      // Finite but absurd: every normalised row ~0, all logits exactly 0 (exit 0 before), every architecture.
      {"rms_eps", "tiny-mixtral", f("llama.attention.layer_norm_rms_epsilon", 1e38), {"llama.attention.layer_norm_rms_epsilon", "1e+38", "(0, 1]"}},
      {"rms_eps", "tiny-qwen3moe", f("qwen3moe.attention.layer_norm_rms_epsilon", 1.5), {"qwen3moe.attention.layer_norm_rms_epsilon", "1.5"}},
      {"rms_eps", "tiny-deepseek2", f("deepseek2.attention.layer_norm_rms_epsilon", 1e38), {"deepseek2.attention.layer_norm_rms_epsilon"}},
      {"rms_eps", "tiny-qwen2moe", f("qwen2moe.attention.layer_norm_rms_epsilon", 1e20), {"qwen2moe.attention.layer_norm_rms_epsilon"}},
      {"rms_eps", "tiny-gpt-oss", f("gpt-oss.attention.layer_norm_rms_epsilon", 1e38), {"gpt-oss.attention.layer_norm_rms_epsilon"}},
      {"rope_freq_base", "tiny-mixtral", f("llama.rope.freq_base", nan), {"llama.rope.freq_base", "nan"}},
      {"rope_freq_base", "tiny-mixtral", f("llama.rope.freq_base", 0), {"llama.rope.freq_base"}},
      {"rope_freq_base", "tiny-deepseek2", f("deepseek2.rope.freq_base", -inf), {"deepseek2.rope.freq_base", "-inf"}},
      {"rope_scaling", "tiny-deepseek2", f("deepseek2.rope.scaling.factor", nan), {"deepseek2.rope.scaling.factor", "nan"}},
      {"rope_scaling", "tiny-deepseek2", f("deepseek2.rope.scaling.factor", -2), {"deepseek2.rope.scaling.factor", "-2"}},
      {"rope_scaling", "tiny-mixtral", f("llama.rope.scaling.factor", inf), {"llama.rope.scaling.factor", "inf"}},
      {"yarn", "tiny-deepseek2", u("deepseek2.rope.scaling.original_context_length", 0), {"deepseek2.rope.scaling.original_context_length"}},
      {"yarn", "tiny-deepseek2", f("deepseek2.rope.scaling.yarn_log_multiplier", nan), {"deepseek2.rope.scaling.yarn_log_multiplier", "nan"}},
      {"yarn", "tiny-gpt-oss", f("gpt-oss.rope.scaling.yarn_beta_fast", nan), {"gpt-oss.rope.scaling.yarn_beta_fast"}},
      {"sliding_window", "tiny-gpt-oss", u("gpt-oss.attention.sliding_window", 0), {"gpt-oss.attention.sliding_window", "0", "1.."}},
      {"sliding_window", "tiny-gpt-oss", u("gpt-oss.attention.sliding_window", uint64_t{1} << 40), {"gpt-oss.attention.sliding_window", "1099511627776"}},
      {"sliding_window", "tiny-gpt-oss", [](M& m) { drop_key(m, "gpt-oss.attention.sliding_window"); }, {"gpt-oss.attention.sliding_window", "absent"}},
      {"yarn", "tiny-deepseek2", f("deepseek2.rope.scaling.yarn_beta_slow", 0), {"deepseek2.rope.scaling.yarn_beta_slow"}},
      {"expert_weights_scale", "tiny-deepseek2", f("deepseek2.expert_weights_scale", nan), {"deepseek2.expert_weights_scale", "nan"}},
      {"expert_weights_scale", "tiny-deepseek2", f("deepseek2.expert_weights_scale", 0), {"deepseek2.expert_weights_scale"}},
      {"expert_weights_scale", "tiny-deepseek2", f("deepseek2.expert_weights_scale", 1e38), {"deepseek2.expert_weights_scale", "1e+38", "1000"}},
      {"expert_weights_scale", "tiny-deepseek2", f("deepseek2.expert_weights_scale", 1001), {"deepseek2.expert_weights_scale", "1001"}},
      {"rope_scaling", "tiny-deepseek2", f("deepseek2.rope.scaling.factor", 1e30), {"deepseek2.rope.scaling.factor", "1e+30"}},
      {"yarn", "tiny-deepseek2", f("deepseek2.rope.scaling.yarn_log_multiplier", 1e30), {"deepseek2.rope.scaling.yarn_log_multiplier", "1e+30"}},
      {"yarn", "tiny-deepseek2", f("deepseek2.rope.scaling.yarn_log_multiplier", -1), {"deepseek2.rope.scaling.yarn_log_multiplier", "-1"}},
      {"head_dims", "tiny-qwen3moe", u("qwen3moe.attention.key_length", 0), {"qwen3moe.attention.key_length", "0"}},
      {"head_dims", "tiny-qwen3moe", u("qwen3moe.attention.value_length", 0), {"qwen3moe.attention.value_length"}},
      {"head_dims", "tiny-mixtral", u("llama.attention.head_count", 256), {"llama.attention.key_length", "absent"}},
      {"head_dims", "tiny-deepseek2", u("deepseek2.attention.value_length_mla", 0), {"deepseek2.attention.value_length_mla"}},
      {"head_count_kv", "tiny-mixtral", u("llama.attention.head_count_kv", 3), {"llama.attention.head_count_kv", "3", "llama.attention.head_count"}},
      {"head_count_kv", "tiny-mixtral", u("llama.attention.head_count_kv", 0), {"llama.attention.head_count_kv"}},
      // The repro on mixtral-tiny (head dim 16): 32 and 64 corrupted the heap, 17 and 18 changed
      // the logits silently. The tiny preset's head dim is 32.
      {"rope_dims", "tiny-mixtral", u("llama.rope.dimension_count", 64), {"llama.rope.dimension_count", "64", "32"}},
      {"rope_dims", "tiny-mixtral", u("llama.rope.dimension_count", 1000), {"llama.rope.dimension_count", "1000"}},
      {"rope_dims", "tiny-mixtral", u("llama.rope.dimension_count", 33), {"llama.rope.dimension_count", "33"}},
      {"rope_dims", "tiny-mixtral", u("llama.rope.dimension_count", 31), {"llama.rope.dimension_count", "even"}},
      {"rope_dims", "tiny-mixtral", u("llama.rope.dimension_count", 0), {"llama.rope.dimension_count"}},
      {"rope_dims", "tiny-qwen3moe", u("qwen3moe.rope.dimension_count", k2p32m1), {"qwen3moe.rope.dimension_count"}},
      {"rope_dims", "tiny-deepseek2", u("deepseek2.rope.dimension_count", 48), {"deepseek2.rope.dimension_count", "key_length_mla"}},
      {"rope_dims", "tiny-deepseek2", u("deepseek2.rope.dimension_count", 15), {"deepseek2.rope.dimension_count", "15"}},
      {"expert_used_count", "tiny-mixtral", u("llama.expert_used_count", 9), {"llama.expert_used_count", "9", "llama.expert_count"}},
      {"expert_used_count", "tiny-mixtral", u("llama.expert_used_count", 0), {"llama.expert_used_count"}},
      {"expert_used_count", "tiny-mixtral", [](M& m) { set_uint(m, "llama.expert_count", 0); }, {"llama.expert_used_count", "llama.expert_count"}},
      {"expert_groups", "tiny-deepseek2", u("deepseek2.expert_group_count", 3), {"deepseek2.expert_group_count", "3"}},
      {"expert_groups", "tiny-deepseek2", u("deepseek2.expert_group_count", 128), {"deepseek2.expert_group_count", "64"}},
      {"expert_groups", "tiny-deepseek2", u("deepseek2.expert_group_used_count", 5), {"deepseek2.expert_group_used_count", "5"}},
      {"expert_groups", "tiny-deepseek2", u("deepseek2.expert_group_used_count", 0), {"deepseek2.expert_group_used_count"}},
      {"expert_groups", "tiny-deepseek2", [](M& m) { set_uint(m, "deepseek2.expert_group_count", 8); set_uint(m, "deepseek2.expert_group_used_count", 1); },
       {"deepseek2.expert_used_count", "kept"}},
      {"leading_dense_block_count", "tiny-deepseek2", u("deepseek2.leading_dense_block_count", 3), {"deepseek2.leading_dense_block_count", "3"}},
      {"leading_dense_block_count", "tiny-deepseek2", u("deepseek2.leading_dense_block_count", k2p32m1), {"deepseek2.leading_dense_block_count"}},
      {"nextn_predict_layers", "tiny-glm4moe", u("glm4moe.nextn_predict_layers", 4), {"glm4moe.nextn_predict_layers", "4", "glm4moe.block_count - 1 = 3"}},
      {"nextn_predict_layers", "tiny-glm4moe", u("glm4moe.nextn_predict_layers", k2p32m1), {"glm4moe.nextn_predict_layers", "4294967295"}},
      // block_count counts the NextN layer: leaving it out no longer matches the file.
      {"block_count", "tiny-glm4moe", u("glm4moe.block_count", 3), {"glm4moe.block_count", "4 layers"}},
      {"rope_dims", "tiny-glm4moe", u("glm4moe.rope.dimension_count", 33), {"glm4moe.rope.dimension_count", "33"}},
      {"shared_ffn_length", "tiny-glm4moe", [](M& m) { set_shape(m, "blk.1.ffn_up_shexp.weight", {128, 128}); },
       {"blk.1.ffn_up_shexp.weight", "glm4moe.expert_shared_count 1 x glm4moe.expert_feed_forward_length"}},
      {"block_count", "tiny-mixtral", u("llama.block_count", 3), {"llama.block_count", "blk.2."}},
      {"block_count", "tiny-mixtral", u("llama.block_count", k2p32m1), {"llama.block_count", "4294967295", "2 layers"}},
      {"block_count", "tiny-deepseek2", u("deepseek2.block_count", 2), {"deepseek2.block_count", "3 layers"}},
      {"block_count", "tiny-mixtral",
       [](M& m) {
         for (auto& t : m.tensors)
           if (t.name.rfind("blk.1.", 0) == 0) t.name = "blk.5." + t.name.substr(6);
       },
       {"llama.block_count", "blk.5.", "blk.1."}},
      {"token_embedding", "tiny-qwen3moe", u("qwen3moe.embedding_length", 64), {"qwen3moe.embedding_length", "token_embd.weight"}},
      {"token_embedding", "tiny-mixtral", [](M& m) { drop_tensor(m, "token_embd.weight"); }, {"token_embd.weight", "missing"}},
      {"vocab_size", "tiny-mixtral", u("llama.vocab_size", 1000), {"llama.vocab_size", "1000", "token_embd.weight", "512"}},
      {"vocab_size", "tiny-mixtral", u("llama.vocab_size", uint64_t{1} << 40), {"llama.vocab_size", "token_embd.weight"}},
      {"tokenizer_tokens", "tiny-mixtral",
       [](M& m) {
         for (auto& [k, v] : m.metadata)
           if (k == "tokenizer.ggml.tokens") {
             auto a = std::make_shared<gguf::Array>(v.as_array());
             a->strings.resize(500);
             v.data = std::shared_ptr<const gguf::Array>(a);
           }
       },
       {"tokenizer.ggml.tokens", "500", "token_embd.weight", "512"}},
      {"output", "tiny-mixtral", [](M& m) { set_shape(m, "output.weight", {256, 128}); }, {"output.weight", "{256, 128}", "{512, 128}"}},
      {"attention_shapes", "tiny-qwen3moe", u("qwen3moe.attention.head_count", 8), {"blk.0.attn_q.weight", "qwen3moe.attention.head_count 8"}},
      {"attention_shapes", "tiny-qwen3moe", u("qwen3moe.attention.head_count_kv", 4), {"blk.0.attn_k.weight", "qwen3moe.attention.head_count_kv 4"}},
      {"attention_shapes", "tiny-mixtral", [](M& m) { set_shape(m, "blk.1.attn_v.weight", {32, 128}); }, {"blk.1.attn_v.weight", "{32, 128}", "{64, 128}"}},
      {"attention_shapes", "tiny-qwen3moe", [](M& m) { drop_tensor(m, "blk.1.attn_v.weight"); }, {"blk.1.attn_v.weight", "missing"}},
      {"attention_shapes", "tiny-olmoe", [](M& m) { set_shape(m, "blk.0.attn_output.weight", {128, 64}); }, {"blk.0.attn_output.weight"}},
      {"mla_q_lora_rank", "tiny-deepseek2", u("deepseek2.attention.q_lora_rank", 32), {"blk.0.attn_q_a.weight", "deepseek2.attention.q_lora_rank 32"}},
      {"mla_q_lora_rank", "tiny-deepseek2", [](M& m) { drop_key(m, "deepseek2.attention.q_lora_rank"); }, {"deepseek2.attention.q_lora_rank", "blk.0.attn_q_a.weight"}},
      {"mla_q_lora_rank", "tiny-deepseek2", u("deepseek2.attention.key_length_mla", 40), {"blk.0.attn_q_b.weight"}},
      {"mla_q_lora_rank", "tiny-deepseek-v2-lite", u("deepseek2.attention.head_count", 2), {"blk.0.attn_q.weight", "deepseek2.attention.head_count 2"}},
      {"mla_kv_lora_rank", "tiny-deepseek2", u("deepseek2.attention.kv_lora_rank", 32), {"blk.0.attn_kv_a_mqa.weight", "deepseek2.attention.kv_lora_rank 32"}},
      {"mla_kv_lora_rank", "tiny-deepseek2", u("deepseek2.attention.value_length_mla", 16), {"blk.0.attn_v_b.weight", "deepseek2.attention.value_length_mla 16"}},
      {"mla_kv_lora_rank", "tiny-deepseek2", [](M& m) { drop_tensor(m, "blk.2.attn_kv_a_mqa.weight"); }, {"blk.2.attn_kv_a_mqa.weight", "missing"}},
      {"mla_kv_lora_rank", "tiny-deepseek2", [](M& m) { set_shape(m, "blk.2.attn_k_b.weight", {4, 64, 16}); }, {"blk.2.attn_k_b.weight", "{4, 64, 32}"}},
      {"moe_layers", "tiny-deepseek2", u("deepseek2.leading_dense_block_count", 0), {"blk.0.ffn_gate_inp.weight", "missing"}},
      {"moe_layers", "tiny-deepseek2", u("deepseek2.leading_dense_block_count", 2), {"deepseek2.leading_dense_block_count", "blk.1.ffn_gate_inp.weight"}},
      {"moe_layers", "tiny-mixtral", [](M& m) { set_uint(m, "llama.expert_count", 0); set_uint(m, "llama.expert_used_count", 0); },
       {"llama.expert_count", "blk.0.ffn_gate_inp.weight"}},
      {"moe_layers", "tiny-mixtral", [](M& m) { drop_tensor(m, "blk.1.ffn_gate_inp.weight"); }, {"blk.1.ffn_gate_inp.weight", "missing"}},
      // inspect used to print expert_count 896 next to tensors of 8 experts.
      {"expert_count", "tiny-mixtral", u("llama.expert_count", 896), {"llama.expert_count 896", "blk.0.ffn_gate_inp.weight", "{8, 128}"}},
      {"expert_count", "tiny-mixtral", [](M& m) { set_shape(m, "blk.1.ffn_up_exps.weight", {7, 256, 128}); }, {"llama.expert_count 8", "blk.1.ffn_up_exps.weight", "7 experts"}},
      {"expert_count", "tiny-mixtral", [](M& m) { to_legacy_experts(m, 0, 7); }, {"llama.expert_count 8", "blk.0.ffn_gate.E.weight", "7"}},
      {"expert_count", "tiny-mixtral", [](M& m) { drop_tensor(m, "blk.0.ffn_gate_exps.weight"); drop_tensor(m, "blk.0.ffn_up_exps.weight"); drop_tensor(m, "blk.0.ffn_down_exps.weight"); },
       {"blk.0.ffn_gate_exps.weight", "missing"}},
      {"expert_ffn_length", "tiny-qwen3moe", u("qwen3moe.expert_feed_forward_length", 128), {"qwen3moe.expert_feed_forward_length", "blk.0.ffn_gate_exps.weight"}},
      {"expert_ffn_length", "tiny-mixtral", u("llama.feed_forward_length", uint64_t{1} << 34), {"llama.feed_forward_length", "blk.0.ffn_gate_exps.weight"}},
      {"expert_ffn_length", "tiny-mixtral", [](M& m) { to_legacy_experts(m, 1, 8); set_shape(m, "blk.1.ffn_down.0.weight", {128, 128}); }, {"blk.1.ffn_down.0.weight"}},
      {"dense_ffn_length", "tiny-deepseek2", u("deepseek2.feed_forward_length", 128), {"deepseek2.feed_forward_length", "blk.0.ffn_gate.weight"}},
      {"shared_ffn_length", "tiny-deepseek2", u("deepseek2.expert_shared_count", 2), {"deepseek2.expert_shared_count 2", "blk.1.ffn_gate_shexp.weight"}},
      {"shared_ffn_length", "tiny-qwen2moe", u("qwen2moe.expert_shared_feed_forward_length", 128), {"qwen2moe.expert_shared_feed_forward_length", "blk.0.ffn_gate_shexp.weight"}},
  };
  // clang-format on
}

}  // namespace moetier::test
