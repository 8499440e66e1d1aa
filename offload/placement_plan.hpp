// offload/placement_plan.hpp — the placement plan: for every routed expert its home tier (gpu:N, dram,
// nvme), where the non-expert weights live, and the DRAM cache (bytes, eviction policy) for experts
// streamed from NVMe. A versioned JSON document that `moetier plan` writes and `moetier run` reads:
//
//   {"schema": "moetier.placement/1",
//    "model": {"file": "mixtral.gguf", "n_layers": 32, "n_experts": 8, "expert_bytes": [B0, ..., B31]},
//    "non_expert": "dram",
//    "cache": {"bytes": 2147483648, "policy": "lru"},
//    "experts": [["dram", "nvme", ...8 tiers...], ...32 layers...]}
//
// expert_bytes[l] is the size of one expert of layer l (gate + up + down), 0 for a layer without routed
// experts (e.g. DeepSeek's dense first layers), whose "experts" entry is then []. Reading validates
// everything and names the JSON path (RFC 6901 pointer) of the first problem.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "offload/eviction_policy.hpp"
#include "offload/expert_id.hpp"

namespace moetier::offload {

/// The schema string this build reads and writes.
inline constexpr std::string_view kPlacementSchema = "moetier.placement/1";

/// A memory tier: "gpu:N" (device N), "dram", or "nvme".
struct Tier {
  enum class Kind : uint8_t { Gpu, Dram, Nvme };
  Kind kind = Kind::Dram;
  int32_t device = 0;  ///< GPU index (Kind::Gpu only; 0 otherwise)
  friend bool operator==(const Tier&, const Tier&) = default;
  static Tier gpu(int32_t n) { return Tier{Kind::Gpu, n}; }
  static Tier dram() { return Tier{Kind::Dram, 0}; }
  static Tier nvme() { return Tier{Kind::Nvme, 0}; }
};

/// "gpu:0", "dram", "nvme".
std::string to_string(Tier t);
/// Parses a tier string; false when malformed (e.g. "gpu", "gpu:-1", "ram").
bool parse_tier(std::string_view s, Tier& out);

/// The model a plan was made for.
struct ModelIdentity {
  std::string file;                   ///< GGUF file name (first split)
  int32_t n_layers = 0;               ///< all blocks, dense ones included
  int32_t n_experts = 0;              ///< routed experts per MoE layer
  std::vector<uint64_t> expert_bytes;  ///< [n_layers] bytes of one expert; 0: no routed experts
  friend bool operator==(const ModelIdentity&, const ModelIdentity&) = default;
};

/// A placement plan (see file comment).
struct PlacementPlan {
  ModelIdentity model;
  Tier non_expert = Tier::dram();     ///< attention, norms, embeddings, shared experts: dram or gpu:N
  uint64_t cache_bytes = 0;           ///< DRAM cache for experts homed on nvme, bytes
  PolicyKind cache_policy = PolicyKind::Lru;
  std::vector<std::vector<Tier>> experts;  ///< [n_layers][n_experts], [] for layers without experts

  /// Home tier of `id`; throws moetier::Error when `id` is outside the plan.
  Tier tier(ExpertId id) const;
  /// Experts whose home is of `kind` (layer-major order).
  std::vector<ExpertId> experts_on(Tier::Kind kind) const;
  /// Total bytes of experts whose home is of `kind`.
  uint64_t bytes_on(Tier::Kind kind) const;

  /// Checks internal consistency (the same checks as reading). Throws moetier::Error naming the JSON
  /// path of the first problem.
  void validate() const;
  /// Refuses a plan that needs a backend this process lacks: any gpu:N tier when !has_gpu. Throws
  /// moetier::Error saying how many experts (first one named) and whether the non-expert weights.
  void validate_for_backends(bool has_gpu) const;
  /// Throws moetier::Error when the plan was made for a different model than `actual`.
  void check_model(const ModelIdentity& actual) const;
};

/// Serialises `plan` (validated first) as pretty-printed JSON.
std::string plan_to_json(const PlacementPlan& plan);
/// Parses and validates a plan; `source` (file name) prefixes error messages:
/// "plan.json: /experts/3/5: bad tier \"gpu\" (expected gpu:N, dram or nvme)".
PlacementPlan parse_placement_plan(std::string_view json_text, const std::string& source = "<plan>");
/// Reads and validates a plan file. Throws moetier::Error (unreadable or non-regular file, or any
/// validation error).
PlacementPlan read_placement_plan(const std::string& path);
/// Writes `plan` to `path` (validated first) through a temporary renamed onto it (common/file_io.hpp:
/// `path` must be absent or a regular file). Throws moetier::Error on failure.
void write_placement_plan(const std::string& path, const PlacementPlan& plan);

/// Bytes the planners reserve per cache slot: the largest expert of `model` with the O_DIRECT alignment
/// slack of its three ranges (an upper bound of the cache's actual slot size).
uint64_t planned_slot_bytes(const ModelIdentity& model);

/// Options of plan_from_ram_budget.
struct RamBudgetOptions {
  uint64_t min_cache_experts = 16;   ///< cache reserved for streaming when not all experts fit (in experts)
  PolicyKind policy = PolicyKind::Lru;
  Tier non_expert = Tier::dram();
};

/// Plans for a DRAM budget: non-expert weights first, then, if not every expert fits, a cache of at
/// least min_cache_experts slots (largest expert + alignment slack each) is set aside, experts are made
/// DRAM-resident in order — most routed first when `usage` ([n_layers][n_experts] counts, e.g.
/// RoutingTrace::usage_counts) is given and non-empty, experts never routed (or all, without usage)
/// spread evenly over layers (expert 0 of every layer, then expert 1, ...) — while they fit, the rest
/// go to nvme, and every byte left becomes cache. Throws moetier::Error when the budget cannot hold
/// the non-expert weights plus one streamed expert, or `usage` has the wrong shape.
PlacementPlan plan_from_ram_budget(const ModelIdentity& model, uint64_t budget_bytes, uint64_t non_expert_bytes,
                                   const std::vector<std::vector<uint64_t>>& usage = {},
                                   RamBudgetOptions opts = {});

/// Puts round(fraction * n_routed_experts) experts on nvme, spread evenly over layers (the highest
/// expert ids of each layer), the rest in DRAM, with a cache of `cache_bytes` (0: min_cache_experts
/// slots of the largest expert, capped at what is streamed). Throws moetier::Error unless 0 <= fraction
/// <= 1.
PlacementPlan plan_experts_on_nvme(const ModelIdentity& model, double fraction, uint64_t cache_bytes = 0,
                                   PolicyKind policy = PolicyKind::Lru, uint64_t min_cache_experts = 16);

}  // namespace moetier::offload
