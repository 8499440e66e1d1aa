// One registration line per architecture.
#include "common/error.hpp"
#include "runtime/models/arch_factories.hpp"
#include "runtime/models/hparams_check.hpp"

namespace moetier::models {

std::unique_ptr<Model> load_model(const gguf::GgufModel& g) {
  // Every hyper-parameter is checked against the others and the tensor shapes before anything is sized
  // from it (weights binding, scratch, KV cache).
  ModelHparams hp = load_checked_hparams(g.metadata(), g.tensors(), g.path());
  switch (hp.arch) {
    case Arch::Llama:
    case Arch::Qwen2Moe:
    case Arch::Qwen3Moe:
    case Arch::Olmoe:
    case Arch::Glm4Moe:
    case Arch::MinimaxM2: return make_standard_model(g, std::move(hp));
    case Arch::Deepseek2: return make_deepseek2_model(g, std::move(hp));
    case Arch::GptOss: return make_gptoss_model(g, std::move(hp));
  }
  fail("{}: architecture {} is recognised but `run` does not support it yet", g.path(), hp.arch_str);
}

}  // namespace moetier::models
