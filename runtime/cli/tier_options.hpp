// Tier options shared by `run`, `bench` and `profile`: --plan, --ram-budget, --experts-on-nvme,
// --cache-size, --cache-policy, --trace, --save-plan, --io-queue-depth, --no-prefetch, --verbose; and
// the set-up that turns them into a placement plan and a TieredExperts provider installed in the model.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/models/model.hpp"
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
  unsigned io_queue_depth = 32;
  bool no_prefetch = false;
  bool verbose = false;
  bool any() const { return !plan.empty() || !ram_budget.empty() || !experts_on_nvme.empty(); }
};

/// Adds the options above to `sub`.
void add_tier_options(CLI::App& sub, TierOptions& o);

/// Parses "8GiB", "512MiB", "1.5GB", "4096" (bytes). Binary (KiB, MiB, GiB, TiB) and decimal (KB, MB,
/// GB, TB) suffixes, case-insensitive. Throws Error naming `what` on anything else.
uint64_t parse_bytes(const std::string& text, const std::string& what);

/// Builds the plan the options describe (Error for conflicting options), prints it with --verbose,
/// saves it with --save-plan, and installs a TieredExperts in `model`. Returns nullptr (and installs
/// nothing) when no tier option is given.
std::unique_ptr<tiered::TieredExperts> setup_tiers(models::Model& model, const TierOptions& o);

}  // namespace moetier::cli
