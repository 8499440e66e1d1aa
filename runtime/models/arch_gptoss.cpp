// gpt-oss (gpt-oss-20b, gpt-oss-120b; llama.cpp LLM_ARCH_OPENAI_MOE): grouped-query attention with
// q/k/v/o biases, a learned per-head sink logit in every softmax denominator (attn_sinks), sliding-window
// attention (attention.sliding_window positions) on the even layers 0, 2, 4, ... and full causal attention
// on the odd ones, NEOX RoPE with YaRN (ggml's magnitude 1 + 0.1 ln(factor), no extra log multiplier on the
// softmax scale, which stays 1 / sqrt(head_dim)). The FFN side is shared Model code configured here:
// post_attention_norm as the FFN norm (model.cpp), router with bias and a softmax over the chosen top-k
// logits (Gating::SoftmaxWeight, hparams.cpp), expert biases and the clamped SwiGLU
// (FfnAct::SwiGLUClampedOss: x = min(gate, 7), y = clamp(up, -7, 7), x * sigmoid(1.702 x) * (y + 1)).
// Source: llama.cpp / ik_llama.cpp graph for "gpt-oss" (build_openai_moe: sliding_window_pattern 2,
// is_sliding = il % 2 < 1; SWA mask pos - j >= n_swa); openai/gpt-oss model.py (AttentionBlock sinks,
// sliding_window on even layers, swiglu alpha 1.702 limit 7).
#include <fmt/format.h>


#include "common/error.hpp"
#include "runtime/models/arch_factories.hpp"
#include "runtime/models/gqa_model.hpp"

namespace moetier::models {
namespace {

class GptOssModel final : public GqaModel {
 public:
  GptOssModel(const gguf::GgufModel& g, ModelHparams hp) : GqaModel(g, std::move(hp)) {
    const int64_t n_embd = hp_.n_embd, dk = hp_.head_dim_k, dv = hp_.head_dim_v;
    const int64_t nq = hp_.n_head * dk, nk = hp_.n_head_kv * dk, nv = hp_.n_head_kv * dv;
    auto name = [](int il, const char* n) { return fmt::format("blk.{}.{}.weight", il, n); };
    auto bias = [](int il, const char* n) { return fmt::format("blk.{}.{}.bias", il, n); };
    for (int il = 0; il < hp_.n_layer; ++il) {
      GqaLayer L = bind_projections(il);
      // llama.cpp requires all four biases and the sinks for gpt-oss.
      L.bq = vector_f32(g, bias(il, "attn_q"), nq);
      L.bk = vector_f32(g, bias(il, "attn_k"), nk);
      L.bv = vector_f32(g, bias(il, "attn_v"), nv);
      L.bo = vector_f32(g, bias(il, "attn_output"), n_embd);
      L.sinks = vector_f32(g, name(il, "attn_sinks"), hp_.n_head);
      L.window = il % 2 == 0 ? hp_.sliding_window : 0;
      attn_layers_.push_back(L);
    }
    set_rope(true);
    ffn_act_ = FfnAct::SwiGLUClampedOss;
    load_common();
  }
};

}  // namespace

std::unique_ptr<Model> make_gptoss_model(const gguf::GgufModel& g, ModelHparams hp) {
  return std::make_unique<GptOssModel>(g, std::move(hp));
}

}  // namespace moetier::models
