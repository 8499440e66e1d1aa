// Seed corpus for fuzz_load: micro models (tens of KiB) of every architecture `moetier synth` knows,
// made from its tiny presets with the dimensions cut down further, in several weight types, so that
// libFuzzer starts from files that load and run and can mutate every byte of them quickly.
// Usage: load_seed_gen OUT_DIR
#include <cstdio>
#include <filesystem>
#include <string>

#include "common/error.hpp"
#include "runtime/synth/synth_model.hpp"
#include "runtime/synth/synth_presets.hpp"

using namespace moetier;

namespace {

/// The tiny preset `p` with every dimension at the smallest size its architecture allows.
synth::Preset micro(synth::Preset p) {
  p.name = "micro-" + p.name;
  p.n_vocab = 272, p.n_ctx = 64, p.n_embd = 32, p.n_head_kv = p.n_head_kv == p.n_head ? 2 : 1, p.n_head = 2;
  p.head_dim = 16;
  p.n_ff = 32;
  if (p.n_ff_exp) p.n_ff_exp = 32;
  if (p.n_ff_shexp) p.n_ff_shexp = 32;
  p.n_expert = 4, p.n_expert_used = 2;
  p.n_layer = p.n_layer_dense_lead > 0 ? 2 : 1;
  if (p.n_expert_groups) p.n_expert_groups = 2, p.n_group_used = 1;
  if (p.kv_lora_rank) {
    if (p.q_lora_rank) p.q_lora_rank = 16;
    p.kv_lora_rank = 16, p.qk_nope_dim = 16, p.qk_rope_dim = 8, p.v_head_dim = 16;
  }
  if (p.yarn_orig_ctx) p.yarn_orig_ctx = 64;
  if (p.sliding_window) p.sliding_window = 2;
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  try {
    const std::filesystem::path out = argv[1];
    std::filesystem::create_directories(out);
    int n = 0;
    for (const auto& preset : synth::all_presets()) {
      if (!preset.tiny || preset.arch == "gpt-oss") continue;  // gpt-oss: recognised, not run (load_model refuses it)
      const synth::Preset p = micro(preset);
      for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_1}) {
        synth::SynthOptions o;
        o.type = type;
        o.seed = 7;
        const auto m = synth::build_synth_model(p, o);
        synth::write_synth_model(m, (out / (p.name + "-" + std::string(ggml_type_name(type)) + ".gguf")).string());
        ++n;
      }
    }
    std::printf("load_seed_gen: %d micro models in %s\n", n, argv[1]);
  } catch (const Error& e) {
    std::fprintf(stderr, "load_seed_gen: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
