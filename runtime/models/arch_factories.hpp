// Factories of the architecture files (one per file), collected by model_registry.cpp.
#pragma once

#include <memory>

#include "runtime/models/model.hpp"

namespace moetier::models {

/// llama (Mixtral-style), qwen2moe, qwen3moe, olmoe: arch_standard.cpp.
std::unique_ptr<Model> make_standard_model(const gguf::GgufModel& g, ModelHparams hp);
/// deepseek2 (DeepSeek-V2, V2-Lite, V3, R1; MLA): arch_deepseek2.cpp.
std::unique_ptr<Model> make_deepseek2_model(const gguf::GgufModel& g, ModelHparams hp);
/// gpt-oss (sinks, alternating sliding window, biases, clamped SwiGLU): arch_gptoss.cpp.
std::unique_ptr<Model> make_gptoss_model(const gguf::GgufModel& g, ModelHparams hp);

}  // namespace moetier::models
