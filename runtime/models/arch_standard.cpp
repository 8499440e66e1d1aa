// Architectures with standard multi-head attention (GQA) and MoE FFNs: llama (Mixtral-style experts),
// qwen2moe, qwen3moe, olmoe, glm4moe, minimax-m2. Differences are tensor bindings: Q/K/V biases (qwen2moe; optional
// elsewhere), per-head Q/K RMSNorm (qwen3moe; glm4moe when the file has it) or full-width Q/K RMSNorm
// (olmoe, minimax-m2), RoPE type (NORM for llama, NEOX otherwise) over rope.dimension_count dims of each head
// (glm4moe, minimax-m2: half of them), the FFN norm's name (glm4moe: post_attention_norm). glm4moe's NextN layers
// (blk.n_layer.. ) are never bound. Source: llama.cpp src/models/{llama,qwen2moe,qwen3moe,olmoe,glm4-moe,minimax-m2}.cpp.
#include <fmt/format.h>


#include "common/error.hpp"
#include "runtime/models/arch_factories.hpp"
#include "runtime/models/gqa_model.hpp"

namespace moetier::models {
namespace {

class StandardModel final : public GqaModel {
 public:
  StandardModel(const gguf::GgufModel& g, ModelHparams hp) : GqaModel(g, std::move(hp)) {
    const int64_t dk = hp_.head_dim_k, dv = hp_.head_dim_v;
    const int64_t nq = hp_.n_head * dk, nk = hp_.n_head_kv * dk, nv = hp_.n_head_kv * dv;
    auto name = [](int il, const char* n) { return fmt::format("blk.{}.{}.weight", il, n); };
    auto bias = [](int il, const char* n) { return fmt::format("blk.{}.{}.bias", il, n); };
    for (int il = 0; il < hp_.n_layer; ++il) {
      GqaLayer L = bind_projections(il);
      if (hp_.arch == Arch::Qwen2Moe) {  // llama.cpp requires qwen2moe's Q/K/V biases
        L.bq = vector_f32(g, bias(il, "attn_q"), nq);
        L.bk = vector_f32(g, bias(il, "attn_k"), nk);
        L.bv = vector_f32(g, bias(il, "attn_v"), nv);
      } else {
        L.bq = optional_vector_f32(g, bias(il, "attn_q"), nq);
        L.bk = optional_vector_f32(g, bias(il, "attn_k"), nk);
        L.bv = optional_vector_f32(g, bias(il, "attn_v"), nv);
      }
      if (hp_.arch == Arch::Qwen3Moe) {
        L.q_norm = vector_f32(g, name(il, "attn_q_norm"), dk);
        L.k_norm = vector_f32(g, name(il, "attn_k_norm"), dk);
      } else if (hp_.arch == Arch::Olmoe || hp_.arch == Arch::MinimaxM2) {
        L.q_norm = vector_f32(g, name(il, "attn_q_norm"), nq);
        L.k_norm = vector_f32(g, name(il, "attn_k_norm"), nk);
        L.full_width_norm = true;
      } else if (hp_.arch == Arch::Glm4Moe) {  // GLM-4.5 (use_qk_norm); Air and 4.6 files have none
        L.q_norm = optional_vector_f32(g, name(il, "attn_q_norm"), dk);
        L.k_norm = L.q_norm ? vector_f32(g, name(il, "attn_k_norm"), dk) : nullptr;
      }
      attn_layers_.push_back(L);
    }
    if (hp_.arch == Arch::Glm4Moe) ffn_norm_name_ = "post_attention_norm";
    set_rope(hp_.rope_type == RopeType::Neox);
    load_common();
  }
};

}  // namespace

std::unique_ptr<Model> make_standard_model(const gguf::GgufModel& g, ModelHparams hp) {
  return std::make_unique<StandardModel>(g, std::move(hp));
}

}  // namespace moetier::models
