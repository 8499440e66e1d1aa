// One candidate of `moetier plan`: the placement the tier options give (build_plan), where every byte
// goes, the cache hit rate (a routing trace replayed through the real cache policy, offload/cache_sim, or
// the share of streamed experts the cache holds under uniform routing) and the predicted decode and
// prompt speed from the machine profile (runtime/tuning/throughput_model.hpp). Shared by the plan table
// and --search.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "offload/routing_trace.hpp"
#include "runtime/cli/tier_options.hpp"
#include "runtime/tuning/machine_profile.hpp"
#include "runtime/tuning/throughput_model.hpp"

namespace moetier::cli {

/// What every candidate shares.
struct PlanContext {
  const models::Model* model = nullptr;
  const std::vector<gguf::TensorInfo>* tensors = nullptr;
  int64_t n_ctx = 0;              ///< per sequence
  int64_t n_batch = 512;
  uint64_t metadata_bytes = 0;
  double vram_gbps = 0;           ///< 0: assumed (gpu) or the DRAM rate (sim)
  const offload::RoutingTrace* trace = nullptr;  ///< nullptr: uniform routing
  tuning::PredictShape shape;     ///< threads, parallel, prompt tokens, decode context
};

struct PlanEval {
  PlannedRun pr;
  tiered::MemoryParts mem;
  uint64_t slot_bytes = 0;
  size_t n_nvme_experts = 0;
  double hit_rate = 1.0;
  bool hit_rate_from_trace = false;
  double dev_bytes = 0, dev_gbps = 0;  ///< per decode token, on the device tier
  bool has_dev = false, dev_is_sim = false, ne_on_dev = false;
  offload::Tier dev;
  tuning::ModelWork work;
  tuning::Prediction pred;
};

/// Builds and predicts one candidate. `real_cache`: size the cache by constructing the TieredExperts run
/// would make (exact slot size), else by offload::planned_slot_bytes (an upper bound; --search).
/// Throws Error as build_plan does.
PlanEval evaluate_plan(const PlanContext& c, const TierOptions& t, const tuning::MachineProfile& m, bool real_cache);

/// --search: evaluates the alternatives to `given` (without a device: experts on NVMe 0, 25, 50, 75, 100 % x
/// cache sizes of 1/16, 1/8, 1/4 and 1/2 of the streamed experts; with a device: its non-expert FFNs on it
/// or not x experts limited to 0, 25, 50, 75, 100 % of the VRAM left; lru, lfu and freq_decay with a
/// trace; 1, 2, 4 and 8 sequences) that fit the --ram-budget of `given` (when it has one), prints them
/// ranked by predicted decode tokens/s (all sequences together; the first 20 and each placement's best),
/// and writes the best one's plan to `out` when not empty.
void search_plans(const PlanContext& c, const TierOptions& given, const tuning::MachineProfile& m, const PlanEval& given_eval,
                  const std::string& out);

}  // namespace moetier::cli
