// offload/placement_plan.hpp — the placement plan: for every routed expert its home tier (gpu:N, sim:N,
// dram, nvme), where the non-expert weights and the KV cache live, the memory budget of each device, and
// the DRAM cache (bytes, eviction policy) for experts streamed from NVMe. A versioned JSON document that
// `moetier plan` writes and `moetier run` reads:
//
//   {"schema": "moetier.placement/1",
//    "model": {"file": "mixtral.gguf", "n_layers": 32, "n_experts": 8, "expert_bytes": [B0, ..., B31]},
//    "non_expert": "sim:0",
//    "kv_cache": "sim:0",
//    "cache": {"bytes": 2147483648, "policy": "lru"},
//    "devices": [{"tier": "sim:0", "bytes": 8589934592, "h2d_gbps": 24}],
//    "experts": [["sim:0", "dram", "nvme", ...8 tiers...], ...32 layers...]}
//
// expert_bytes[l] is the size of one expert of layer l (gate + up + down), 0 for a layer without routed
// experts (e.g. DeepSeek's dense first layers), whose "experts" entry is then []. "kv_cache" (default
// "dram") and "devices" (default []) are optional and written only when they differ from the default, so
// plans without device tiers read and write as before. A "devices" entry is the budget (bytes) of one
// device tier (gpu:N: CUDA device N; sim:N: the simulated device, with an optional host->device copy rate
// in GB/s, 0 = unpaced); the experts a plan puts on a listed device must fit its budget (the non-expert
// weights and KV cache sizes are not in the plan: check_device_budgets checks them when they are known).
// Reading validates everything and names the JSON path (RFC 6901 pointer) of the first problem.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "offload/eviction_policy.hpp"
#include "offload/expert_id.hpp"

namespace moetier::offload {

/// Slowest host->device copy rate a simulated device may be given (GB/s; 1 MB/s): below it a load would
/// take hours. 0 means unpaced.
inline constexpr double kMinSimH2dGbps = 1e-3;

/// The schema string this build reads and writes.
inline constexpr std::string_view kPlacementSchema = "moetier.placement/1";

/// A memory tier: "gpu:N" (CUDA device N), "sim:N" (simulated device N), "dram", or "nvme".
struct Tier {
  enum class Kind : uint8_t { Gpu, Dram, Nvme, Sim };
  Kind kind = Kind::Dram;
  int32_t device = 0;  ///< device index (Kind::Gpu and Kind::Sim only; 0 otherwise)
  friend bool operator==(const Tier&, const Tier&) = default;
  static Tier gpu(int32_t n) { return Tier{Kind::Gpu, n}; }
  static Tier sim(int32_t n) { return Tier{Kind::Sim, n}; }
  static Tier dram() { return Tier{Kind::Dram, 0}; }
  static Tier nvme() { return Tier{Kind::Nvme, 0}; }
  /// gpu:N or sim:N: memory of a device (VRAM), not of the host.
  bool is_device() const { return kind == Kind::Gpu || kind == Kind::Sim; }
};

/// "gpu:0", "sim:0", "dram", "nvme".
std::string to_string(Tier t);
/// Parses a tier string; false when malformed (e.g. "gpu", "gpu:-1", "sim:", "ram").
bool parse_tier(std::string_view s, Tier& out);

/// The memory budget of one device tier in a plan ("devices" entry).
struct DeviceBudget {
  Tier tier = Tier::sim(0);         ///< gpu:N or sim:N
  uint64_t bytes = 0;               ///< device memory the plan may use (the VRAM budget), bytes, > 0
  std::optional<double> h2d_gbps;   ///< sim:N only: host->device copy rate, GB/s (0: unpaced); none: the default
  friend bool operator==(const DeviceBudget&, const DeviceBudget&) = default;
};

/// The device tiers a process can compute on: gpu:0..gpu:n_gpu-1 and sim:0..sim:n_sim-1.
struct DeviceTiers {
  int32_t n_gpu = 0;  ///< CUDA devices (kernels/gpu_backend.hpp device_count()); kAnyGpu: any index
  int32_t n_sim = 0;  ///< simulated devices (--sim-device turns on sim:0)
  static constexpr int32_t kAnyGpu = std::numeric_limits<int32_t>::max();
  bool has(Tier t) const {
    if (t.kind == Tier::Kind::Gpu) return t.device >= 0 && t.device < n_gpu;
    if (t.kind == Tier::Kind::Sim) return t.device >= 0 && t.device < n_sim;
    return true;
  }
};

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
  Tier non_expert = Tier::dram();     ///< attention, norms, embeddings, shared experts: dram, gpu:N or sim:N
  Tier kv_cache = Tier::dram();       ///< the KV cache: dram, gpu:N or sim:N
  uint64_t cache_bytes = 0;           ///< DRAM cache for experts homed on nvme, bytes
  PolicyKind cache_policy = PolicyKind::Lru;
  std::vector<DeviceBudget> devices;  ///< budgets of device tiers (at most one entry per tier)
  std::vector<std::vector<Tier>> experts;  ///< [n_layers][n_experts], [] for layers without experts

  /// Home tier of `id`; throws moetier::Error when `id` is outside the plan.
  Tier tier(ExpertId id) const;
  /// Experts whose home is of `kind` (layer-major order).
  std::vector<ExpertId> experts_on(Tier::Kind kind) const;
  /// Total bytes of experts whose home is of `kind`.
  uint64_t bytes_on(Tier::Kind kind) const;
  /// Experts whose home is exactly `t` (e.g. sim:0), layer-major order.
  std::vector<ExpertId> experts_on(Tier t) const;
  /// Total bytes of experts whose home is exactly `t`.
  uint64_t bytes_on(Tier t) const;
  /// The budget entry of device tier `t`, or nullptr when the plan lists none.
  const DeviceBudget* device_budget(Tier t) const;
  /// Device tiers the plan puts something on (experts, non-expert weights, KV cache), gpu:N before
  /// sim:N, by index; "devices" entries with nothing on them are not included.
  std::vector<Tier> used_devices() const;

  /// Checks internal consistency (the same checks as reading). Throws moetier::Error naming the JSON
  /// path of the first problem.
  void validate() const;
  /// Refuses a plan that needs a device this process lacks (a used gpu:N or sim:N tier that `have` does
  /// not hold). Throws moetier::Error, one line naming the missing tiers, how many experts are on them
  /// (first one named) and whether the non-expert weights or the KV cache, and what the process has.
  void validate_for_backends(const DeviceTiers& have) const;
  /// The same with any gpu:N tier when has_gpu and no simulated device (the pre-sim signature).
  void validate_for_backends(bool has_gpu) const;
  /// Refuses a plan whose device tiers cannot hold what it puts there once the sizes are known: for
  /// every used device with a "devices" entry, its experts + non_expert_bytes (when the non-expert
  /// weights live there) + kv_cache_bytes (when the KV cache does) must not exceed its budget. Throws
  /// moetier::Error naming the device, each part and the budget.
  void check_device_budgets(uint64_t non_expert_bytes, uint64_t kv_cache_bytes) const;
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

/// Checks that `usage` is empty or [n_layers][n_experts] of `model`; throws moetier::Error prefixed
/// with `who` otherwise.
void check_usage_shape(const ModelIdentity& model, const std::vector<std::vector<uint64_t>>& usage, const char* who);

/// Every routed expert of `model` in the order the planners fill a faster tier: most routed first when
/// `usage` ([n_layers][n_experts] counts) is non-empty, ties (and all experts, without usage) spread
/// evenly over layers (expert 0 of every MoE layer, then expert 1, ...). Deterministic.
std::vector<ExpertId> fill_order(const ModelIdentity& model, const std::vector<std::vector<uint64_t>>& usage);

/// The DRAM / NVMe step of the planners: of `order` (experts whose tier in `p` is dram; others are not
/// touched), keeps in DRAM all of them when they fit in budget_bytes - dram_non_expert_bytes; otherwise
/// sets aside a cache of at least min_cache_experts slots (planned_slot_bytes), keeps experts in DRAM
/// in `order` while they fit (skipping any that does not), homes the rest on nvme, and makes every byte
/// left the cache (p.cache_bytes). Throws moetier::Error (naming p.model.file and the bytes) when the
/// budget is smaller than dram_non_expert_bytes, or leaves less than one streamed expert's slot.
void fill_dram_then_nvme(PlacementPlan& p, const std::vector<ExpertId>& order, uint64_t budget_bytes,
                         uint64_t dram_non_expert_bytes, uint64_t min_cache_experts);

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
