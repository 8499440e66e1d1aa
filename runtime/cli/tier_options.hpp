// Tier options shared by `run`, `bench` and `profile`: --plan, --ram-budget, --experts-on-nvme,
// --cache-size, --cache-policy, --trace, --save-plan, --io-queue-depth, --no-prefetch, --verbose; and
// the set-up that turns them into a placement plan and a TieredExperts provider installed in the model.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/models/model.hpp"
#include "runtime/tiered/memory_budget.hpp"
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

/// Checks the tier options' files before a model is opened: --save-plan absent or a regular file,
/// --plan and --trace regular files (common/file_io.hpp); throws Error naming the option.
void check_tier_files(const TierOptions& o);

/// Parses "8GiB", "512MiB", "1.5GB", "4096" (bytes). Binary (KiB, MiB, GiB, TiB) and decimal (KB, MB,
/// GB, TB) suffixes, case-insensitive. Throws Error naming `what` on anything else.
uint64_t parse_bytes(const std::string& text, const std::string& what);

/// What a run holds besides its weights: sizes the KV cache, scratch and metadata parts of --ram-budget.
struct RunShape {
  int64_t n_ctx = 1;            ///< KV-cache positions
  int64_t n_batch = 1;          ///< tokens of the largest forward batch (the prompt)
  uint64_t metadata_bytes = 0;  ///< resident bytes taken by opening the model and its tokenizer (measured)
};

/// Builds the plan the options describe (Error for conflicting options); --ram-budget is the whole
/// process: the KV cache, scratch, I/O state, metadata and fixed overhead of `shape` are set aside
/// before the weights are placed (Error, one line, when the budget cannot hold them plus the non-expert
/// weights and one streamed expert). Prints the plan and the memory table with --verbose, saves the
/// plan with --save-plan, and installs a TieredExperts in `model`. Returns nullptr (and installs
/// nothing) when no tier option is given. `parts` (optional) receives the memory parts of the run.
std::unique_ptr<tiered::TieredExperts> setup_tiers(models::Model& model, const TierOptions& o, const RunShape& shape,
                                                  tiered::MemoryParts* parts = nullptr);

}  // namespace moetier::cli
