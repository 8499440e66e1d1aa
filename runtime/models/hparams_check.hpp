// Hyper-parameter validation: one ordered table of constraints that a model's hyper-parameters must meet,
// among themselves and against the shapes of the file's tensors, before anything is allocated from them
// (KV cache, scratch buffers, weight bindings). Each rule is a predicate with its own message, which names
// the metadata key(s) and / or the tensor involved and what was expected; `run`, `plan`, `bench` (through
// load_model) and `inspect` apply the same table, so a file one of them rejects, all of them reject.
// Rules see only metadata and tensor infos (names, shapes), never tensor bytes, and allocate nothing
// proportional to what the metadata claims.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/gguf/gguf_file.hpp"
#include "runtime/gguf/gguf_value.hpp"
#include "runtime/models/hparams.hpp"

namespace moetier::models {

/// What a rule sees: the hyper-parameters, the metadata they came from (to name the key that set a
/// value), and the file's tensors.
class HparamsView {
 public:
  HparamsView(const ModelHparams& hp, const gguf::Metadata& md, std::span<const gguf::TensorInfo> tensors);

  const ModelHparams& hp;
  const gguf::Metadata& md;
  /// "<arch>.<k>", e.g. key("rope.dimension_count") = "llama.rope.dimension_count".
  std::string key(std::string_view k) const { return hp.arch_str + "." + std::string(k); }
  /// True when the file has metadata key "<arch>.<k>".
  bool has_key(std::string_view k) const { return md.contains(key(k)); }
  /// Tensor `name`, or nullptr.
  const gguf::TensorInfo* tensor(const std::string& name) const;
  /// Distinct layer indices N of the file's blk.N.* tensors (ascending).
  const std::set<int32_t>& layers_present() const { return layers_; }
  /// Number of legacy per-expert tensors blk.<il>.ffn_gate.E.weight of a layer, and their largest E.
  struct LegacyExperts {
    int64_t count = 0;
    int64_t max_id = -1;
  };
  LegacyExperts legacy_experts(int32_t il) const;

 private:
  std::unordered_map<std::string_view, const gguf::TensorInfo*> by_name_;
  std::set<int32_t> layers_;
  std::map<int32_t, LegacyExperts> legacy_;
};

/// One constraint of the table.
struct HparamRule {
  const char* id;           // short stable name ("rope_dims", ...): tests name the rule they expect to fire
  const char* requirement;  // what the rule requires, in words
  /// "" when the rule holds; else one line (without the file name) naming the key / tensor, the values
  /// found and what was expected.
  std::string (*check)(const HparamsView& v);
};

/// The table, in the order rules are applied: a rule may rely on the ones before it (the per-layer rules
/// run only once block_count has been matched with the layers present, products of dimensions only once
/// each factor is known to be positive).
std::span<const HparamRule> hparam_rules();

struct HparamViolation {
  std::string rule;     // HparamRule::id
  std::string message;  // HparamRule::check's line
};

/// The first rule that `hp` violates, or nullopt when all hold.
std::optional<HparamViolation> first_hparam_violation(const ModelHparams& hp, const gguf::Metadata& md,
                                                      std::span<const gguf::TensorInfo> tensors);

/// Throws Error "FILE: <message>" for the first violated rule.
void check_hparams(const ModelHparams& hp, const gguf::Metadata& md, std::span<const gguf::TensorInfo> tensors,
                   const std::string& file);

/// load_hparams followed by check_hparams: what every user of a model's hyper-parameters calls.
ModelHparams load_checked_hparams(const gguf::Metadata& md, std::span<const gguf::TensorInfo> tensors,
                                  const std::string& file);

}  // namespace moetier::models
