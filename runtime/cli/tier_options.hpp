// Tier options shared by `run` and `plan`: --plan, --ram-budget, --vram-budget, --sim-device,
// --experts-on-nvme, --cache-size, --cache-policy, --trace, --save-plan, --io-queue-depth, --no-prefetch,
// --verbose; the device they ask for (DeviceOptions); the placement plan they describe (build_plan); and
// the set-up that installs a TieredExperts provider in the model.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "offload/placement_plan.hpp"
#include "runtime/models/model.hpp"
#include "runtime/tiered/memory_budget.hpp"
#include "runtime/tiered/device_tier.hpp"
#include "runtime/tiered/tiered_experts.hpp"

namespace CLI {
class App;
}

namespace moetier::cli {

struct TierOptions {
  std::string plan;             // --plan FILE
  std::string ram_budget;       // --ram-budget 8GiB
  std::string experts_on_nvme;  // --experts-on-nvme all|FRACTION
  std::string cache_size;       // --cache-size 16 (experts) or 64MiB (bytes), with --experts-on-nvme
  std::string cache_policy;     // --cache-policy lru|lfu|freq_decay
  std::string trace;            // --trace FILE (routing counts for --ram-budget)
  std::string save_plan;        // --save-plan FILE
  std::string vram_budget;      // --vram-budget 20GiB (per device)
  std::string sim_device;       // --sim-device 8GiB[,24GB/s]
  std::string device_slots;     // --device-slots 2GiB: dynamic expert slots, carved from the VRAM budget
  unsigned io_queue_depth = 32;
  /// With a device: false keeps the non-expert FFNs (shared experts, dense FFNs) off it, leaving its
  /// budget to experts (plan --search's alternative; no option sets it).
  bool device_non_expert = true;
  bool no_prefetch = false;
  bool verbose = false;
  bool any() const {
    return !plan.empty() || !ram_budget.empty() || !experts_on_nvme.empty() || !vram_budget.empty() ||
           !sim_device.empty();
  }
};

/// Adds the options above to `sub`.
void add_tier_options(CLI::App& sub, TierOptions& o);

/// Checks the tier options' files before a model is opened: --save-plan absent or a regular file,
/// --plan and --trace regular files (common/file_io.hpp); throws Error naming the option.
void check_tier_files(const TierOptions& o);

/// Parses "8GiB", "512MiB", "1.5GB", "4096" (bytes). Binary (KiB, MiB, GiB, TiB) and decimal (KB, MB,
/// GB, TB) suffixes, case-insensitive. Throws Error naming `what` on anything else.
uint64_t parse_bytes(const std::string& text, const std::string& what);

/// --vram-budget: a size as parse_bytes, above 0. Throws Error naming the option otherwise.
uint64_t parse_vram_budget(const std::string& text);

/// --sim-device CAPACITY[,RATE]: CAPACITY a size as parse_bytes (above 0), RATE the host->device copy
/// rate in GB/s ("24", "24GB/s"; 0: unpaced; default kDefaultSimH2dGbps).
struct SimDeviceArg {
  uint64_t capacity_bytes = 0;
  double h2d_gbps = 0;
};
/// PCIe 4.0 x16's ~24 GB/s: the simulated device's copy rate when --sim-device gives none.
inline constexpr double kDefaultSimH2dGbps = 24.0;
/// Parses --sim-device. Throws Error (one line, the value and the expected form) on anything else.
SimDeviceArg parse_sim_device(const std::string& text);

/// The device tier the options ask for, as plain values. The lead's run builds its sched::DeviceSpec
/// from it: kind = sim ? "sim" : "gpu", index = 0, capacity_bytes = vram_budget_bytes, h2d_gbps.
struct DeviceOptions {
  bool enabled = false;            ///< a device tier is asked for (--vram-budget, --sim-device, or a plan's sim tier)
  bool sim = false;                ///< the simulated device sim:0; otherwise CUDA device gpu:0
  uint64_t capacity_bytes = 0;     ///< sim: its memory (--sim-device CAPACITY); gpu: 0 (not known here)
  double h2d_gbps = kDefaultSimH2dGbps;  ///< sim: host->device copy rate, GB/s (0: unpaced); gpu: unused
  uint64_t slot_bytes = 0;         ///< --device-slots: dynamic expert slots (already taken off vram_budget_bytes)
  uint64_t vram_budget_bytes = 0;  ///< what a plan may put on the device: --vram-budget, else the sim capacity
                                   ///< (from a plan: its "devices" entry; 0 for a gpu:N it gives no budget)
  /// sim:0 or gpu:0.
  offload::Tier tier() const { return sim ? offload::Tier::sim(0) : offload::Tier::gpu(0); }
  /// The device tiers this process has for validate_for_backends: sim:0 when sim; gpu:0..N-1 for the
  /// CUDA devices found (sched::gpu_device_count(), scheduler/backend_registry.hpp).
  offload::DeviceTiers tiers() const;
};

/// The device of --vram-budget / --sim-device (disabled when neither is given). Throws Error (one line)
/// for --vram-budget without --sim-device on a machine without a CUDA device (naming the sim tier for
/// testing), and for a --vram-budget larger than the simulated device's capacity. Called by
/// check_tier_options, so these are reported before the model is opened.
DeviceOptions device_options(const TierOptions& o);

/// The device a run of `plan` opens (one device for now): `o` when enabled (with --sim-device, a plan
/// whose sim:0 budget exceeds the capacity is an Error); otherwise the plan's first used device tier:
/// sim:N from its "devices" entry (capacity and VRAM budget = its bytes, rate = its h2d_gbps or the
/// default; Error, naming `source`, when it has none), gpu:N with the entry's bytes as the VRAM budget
/// (0 without one). Disabled when the plan uses no device. Pair it with
/// plan.validate_for_backends(result.tiers()), which refuses the tiers the process lacks.
DeviceOptions devices_for_plan(const DeviceOptions& o, const offload::PlacementPlan& plan, const std::string& source);

/// What a run holds besides its weights: sizes the KV cache, scratch and metadata parts of --ram-budget.
struct RunShape {
  int64_t n_ctx = 1;            ///< KV-cache positions
  int64_t n_batch = 1;          ///< tokens of the largest forward batch (the prompt)
  uint64_t metadata_bytes = 0;  ///< resident bytes taken by opening the model and its tokenizer (measured)
};

/// The placement plan of a run and what it was built from.
struct PlannedRun {
  offload::PlacementPlan plan;
  DeviceOptions device;          ///< the device the plan uses (devices_for_plan); enabled = false: none
  /// DRAM parts of the process before add_plan_parts. No device backend computes attention yet (the CUDA
  /// backend, issue 10, will): the host keeps every non-expert weight and the KV cache whatever the plan
  /// says, and a device that takes the non-expert weights holds copies of the FFNs it computes.
  tiered::MemoryParts parts;
  uint64_t non_expert_bytes = 0;  ///< of the model (host memory)
  uint64_t kv_cache_bytes = 0;    ///< for shape.n_ctx positions (host memory)
  uint64_t device_non_expert_bytes = 0;  ///< what a device holds when it takes the non-expert weights: the
                                         ///< shared experts and dense FFNs (tiered::non_expert_ffn_bytes)
  uint64_t device_kv_cache_bytes = 0;    ///< what a device holds of the KV cache (0: attention on the CPU)
  uint64_t ram_budget_bytes = 0;  ///< --ram-budget, 0 when not given
  std::vector<std::string> notes;  ///< the VRAM planner's notes (what did not fit the device), one line each
};

/// Builds the plan the options describe (o.any() must hold): read from --plan, or --ram-budget /
/// --experts-on-nvme as before, or with a device (--vram-budget / --sim-device, with or without
/// --ram-budget) offload::plan_with_vram over the device, DRAM and NVMe. Checks the plan against the
/// model, the devices this process has (validate_for_backends) and the device budget with the real
/// non-expert and KV-cache sizes (check_device_budgets). Throws Error, one line, for conflicting options,
/// a budget that cannot hold the run (see setup_tiers) or a plan the process cannot run. Saves nothing
/// and prints nothing.
PlannedRun build_plan(const models::Model& model, const TierOptions& o, const RunShape& shape);

/// Builds the plan the options describe (Error for conflicting options); --ram-budget is the whole
/// process: the KV cache, scratch, I/O state, metadata and fixed overhead of `shape` are set aside
/// before the weights are placed (Error, one line, when the budget cannot hold them plus the non-expert
/// weights and one streamed expert). Prints the plan and the memory table with --verbose, saves the
/// plan with --save-plan, and installs in `model` a TieredExperts (experts on NVMe) and a DeviceTier (a
/// device tier: its experts and FFNs copied there, dynamic slots with --device-slots). Returns empty
/// RunTiers (and installs nothing) when no tier option is given. `parts` (optional) receives the memory
/// parts of the run.
struct RunTiers {
  std::unique_ptr<tiered::TieredExperts> streamed;  ///< nullptr: no expert on NVMe
  std::unique_ptr<tiered::DeviceTier> device;       ///< nullptr: no device tier
  offload::PlacementPlan plan;                      ///< the plan in force (empty without tier options)
};
RunTiers setup_tiers(models::Model& model, const TierOptions& o, const RunShape& shape,
                     tiered::MemoryParts* parts = nullptr);

}  // namespace moetier::cli
