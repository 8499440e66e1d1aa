// Helpers for the tiered-expert tests: temporary folders, synthesized models (tiny presets, optionally
// with wider experts so that they outweigh everything else), placement plans made by hand, running a
// model over a prompt plus decode steps, and the built `moetier` binary (env MOETIER_BIN).
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "offload/placement_plan.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "runtime/synth/synth_model.hpp"
#include "runtime/tiered/tiered_experts.hpp"
#include "tests/run_util.hpp"

namespace moetier::test {

/// Writes the tiny preset `preset` with weight type `type` to `path`. When n_ff_exp > 0 the routed
/// experts are made that wide (key <arch>.expert_feed_forward_length and the three stacked *_exps
/// tensors reshaped), so that they dominate the file.
inline void write_tiny_model(const std::string& path, const std::string& preset, GgmlType type,
                             int64_t n_ff_exp = 0, uint64_t seed = 7) {
  synth::SynthOptions o;
  o.preset = preset;
  o.type = type;
  o.seed = seed;
  synth::SynthModel m = synth::build_synth_model(o);
  if (n_ff_exp > 0) {
    const std::string key = m.preset.arch + ".expert_feed_forward_length";
    auto it = std::find_if(m.metadata.begin(), m.metadata.end(), [&](const auto& kv) { return kv.first == key; });
    REQUIRE_MESSAGE(it != m.metadata.end(), preset << " has no key " << key);
    it->second.type = gguf::ValueType::UINT32;
    it->second.data = static_cast<uint64_t>(n_ff_exp);
    for (auto& t : m.tensors) {
      const bool gate_up = t.name.find("ffn_gate_exps") != std::string::npos || t.name.find("ffn_up_exps") != std::string::npos;
      const bool down = t.name.find("ffn_down_exps") != std::string::npos;
      if (!gate_up && !down) continue;
      REQUIRE(t.shape.size() == 3);  // [n_expert, n_out, n_in]
      if (gate_up) t.shape[1] = n_ff_exp;
      else t.shape[2] = n_ff_exp;
      t.n_bytes = ggml_row_bytes(t.type, static_cast<uint64_t>(t.shape[0] * t.shape[1] * t.shape[2]));
    }
  }
  synth::write_synth_model(m, path);
}

/// An opened model: GGUF file + loaded architecture.
struct LoadedModel {
  gguf::GgufModel g;
  std::unique_ptr<models::Model> model;
  explicit LoadedModel(const std::string& path) : g(gguf::GgufModel::open(path)), model(models::load_model(g)) {}
};

/// A prompt of `n` token ids (deterministic, inside the vocabulary, avoiding the first ids which are
/// often special).
inline std::vector<int32_t> test_prompt(const models::Model& m, int n, uint64_t seed = 11) {
  std::mt19937_64 rng(seed);
  const int64_t v = m.hparams().n_vocab;
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(static_cast<int32_t>(16 + rng() % static_cast<uint64_t>(v - 16)));
  return t;
}

/// Logits of a prefill of `prompt` followed by `n_decode` greedy decode steps (argmax of the previous
/// logits, lowest id on ties): the logit vectors of every step, concatenated. Uses whatever expert
/// provider is installed in the model. Routing records of every step are appended to `routing` if given.
inline std::vector<float> run_steps(models::Model& m, const std::vector<int32_t>& prompt, int n_decode,
                                    std::vector<std::vector<models::RoutingRecord>>* routing = nullptr) {
  models::KvCache cache = m.new_cache(static_cast<int64_t>(prompt.size()) + n_decode + 1);
  std::vector<float> all, logits;
  std::vector<models::RoutingRecord> rec;
  models::ForwardOptions opt;
  if (routing) opt.routing = &rec;
  m.forward(prompt, cache, logits, opt);
  if (routing) routing->push_back(rec);
  all.insert(all.end(), logits.begin(), logits.end());
  for (int i = 0; i < n_decode; ++i) {
    const auto best = std::max_element(logits.begin(), logits.end()) - logits.begin();
    const int32_t tok = static_cast<int32_t>(best);
    m.forward(std::span<const int32_t>(&tok, 1), cache, logits, opt);
    if (routing) routing->push_back(rec);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

/// True when two float vectors are bit-identical.
inline bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// A plan for `model` with every routed expert in DRAM (no cache).
inline offload::PlacementPlan all_dram_plan(const models::Model& model) {
  return offload::plan_experts_on_nvme(tiered::model_identity(model), 0.0, 0);
}

/// Bytes of one cache slot for this model (the largest streamed expert with its alignment slack).
inline uint64_t slot_bytes(const models::Model& model) {
  return tiered::build_expert_catalog(model, nullptr).max_slot_bytes();
}

/// A plan with every routed expert on NVMe and a cache of `n_slots` slots.
inline offload::PlacementPlan all_nvme_plan(const models::Model& model, uint64_t n_slots,
                                            offload::PolicyKind policy = offload::PolicyKind::Lru) {
  return offload::plan_experts_on_nvme(tiered::model_identity(model), 1.0, n_slots * slot_bytes(model), policy);
}

/// A plan whose experts are each on NVMe with probability `p_nvme` (seeded), with a cache of `n_slots`
/// slots (at least one expert is streamed).
inline offload::PlacementPlan random_plan(const models::Model& model, uint64_t seed, double p_nvme, uint64_t n_slots,
                                          offload::PolicyKind policy) {
  offload::PlacementPlan p = all_dram_plan(model);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  bool any = false;
  for (auto& row : p.experts)
    for (auto& t : row)
      if (u(rng) < p_nvme) {
        t = offload::Tier::nvme();
        any = true;
      }
  if (!any)
    for (auto& row : p.experts)
      if (!row.empty()) {
        row.back() = offload::Tier::nvme();
        break;
      }
  p.cache_bytes = n_slots * slot_bytes(model);
  p.cache_policy = policy;
  p.validate();
  return p;
}

}  // namespace moetier::test
