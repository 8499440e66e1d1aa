// The whole process against --ram-budget: the parts of resident memory a run holds — non-expert weights,
// DRAM-resident experts, the cache of streamed experts, the KV cache for the requested context, scratch
// (activation buffers) for the largest batch, the reader's I/O state, the model's metadata and tokenizer,
// and a fixed overhead for the binary, its libraries and threads — the bytes left for weights once the
// others are set aside, and the table `plan` and `run -v` print. A user who says "8GiB" means the process.
#pragma once

#include <cstdint>
#include <string>

#include "offload/placement_plan.hpp"
#include "runtime/models/model.hpp"

namespace moetier::tiered {

/// What the process holds beyond every part MemoryParts computes: the binary and its shared libraries
/// (the pages touched: libstdc++, oneDNN, ICU, OpenMP, hwloc, liburing, CUDA runtime), OpenMP's and
/// oneDNN's state made on first use, allocations that live only while the model and tokenizer load, and
/// file pages the kernel maps around the weights it reads (fault-around). How it was measured (Debian 12,
/// kernel 6.18, 2 CPUs, VmHWM read by the LD_PRELOAD probe tests/tiered/vmhwm_probe.cpp): a `moetier
/// run -m /nonexistent` (libraries loaded, thread pool started, stops before opening a model) peaks at
/// 9.7 MiB; `moetier run --ram-budget` on ../shared's mixtral-tiny-q8_0 and deepseek2-tiny-f32 (-c 64)
/// peaks about 8.5 and 10 MiB above the sum of the other parts at their real sizes (the VmRSS the
/// process had after loading the model, plus the non-expert weights and cache slots it then touched).
/// 16 MiB leaves room for other library versions.
inline constexpr uint64_t kFixedOverheadBytes = 16ull << 20;
/// Added to kFixedOverheadBytes per worker thread (stack pages, a malloc arena, an OpenMP thread):
/// measured +0.1 to 0.2 MiB from -t 1 to -t 2.
inline constexpr uint64_t kWorkerOverheadBytes = 512ull << 10;

/// Resident memory of a run, by part, in bytes (see file comment).
struct MemoryParts {
  uint64_t non_expert = 0;        ///< weights that are not routed experts (mmapped, all read every token)
  uint64_t resident_experts = 0;  ///< routed experts homed in DRAM (mmapped; counted whole)
  size_t n_resident_experts = 0;
  uint64_t expert_cache = 0;      ///< slots of the cache of streamed experts
  size_t n_cache_slots = 0;
  uint64_t kv_cache = 0;          ///< KV cache for n_ctx positions (allocated whole at start)
  int64_t n_ctx = 0;
  uint64_t scratch = 0;           ///< activation buffers for batches of up to n_batch tokens
  int64_t n_batch = 0;
  uint64_t io = 0;                ///< the reader's state besides the cache slots (0 when nothing streams)
  uint64_t metadata = 0;          ///< GGUF metadata and tokenizer, as measured when they were loaded
  uint64_t fixed = kFixedOverheadBytes;  ///< kFixedOverheadBytes + n_workers * kWorkerOverheadBytes
  int n_workers = 0;

  /// Everything but the weights and the expert cache: what is set aside before experts are placed.
  uint64_t reserved() const { return kv_cache + scratch + io + metadata + fixed; }
  uint64_t total() const { return non_expert + resident_experts + expert_cache + reserved(); }
};

/// Resident set of this process now (/proc/self/statm), bytes; 0 where it cannot be read.
uint64_t current_rss_bytes();

/// Upper bound of what a reader with `queue_depth` reads in flight holds besides the cache slots: the
/// io_uring rings, per-read bookkeeping, and the stacks and allocator arenas of the pread fallback's
/// threads (min(queue_depth, 16)), bytes.
uint64_t io_state_bytes(unsigned queue_depth);

/// The parts a run of `model` needs whatever the plan: KV cache for n_ctx (>= 1) positions, scratch for
/// batches of n_batch (>= 1) tokens on n_workers workers, the reader's state for queue_depth (counted
/// until a plan says nothing streams), metadata_bytes (measured by the caller; rounded up to whole MiB so
/// that a plan does not move with the measurement's noise), the fixed overhead for
/// n_workers threads, and the non-expert weights. Weight parts beyond those are filled by add_plan_parts.
MemoryParts process_parts(const models::Model& model, int64_t n_ctx, int64_t n_batch, int n_workers,
                          unsigned queue_depth, uint64_t metadata_bytes);

/// Sets the expert parts from `plan` (resident experts, cache bytes and slots of `slot_bytes` each); the
/// I/O part becomes 0 when the plan streams nothing.
void add_plan_parts(MemoryParts& parts, const offload::PlacementPlan& plan, uint64_t slot_bytes);

/// Every routed expert resident (no plan): the mmapped model as it is.
void add_all_resident(MemoryParts& parts, const offload::ModelIdentity& id);

/// The DRAM budget for the weights (offload::plan_from_ram_budget): budget_bytes less parts.reserved().
/// Throws Error, one line naming the model file, each part, the total needed and a budget to give (the
/// total plus 0.5 to 1.5 MiB, as the measured metadata part varies by a few pages from run to run),
/// when budget_bytes cannot hold parts.reserved() + the non-expert weights + one streamed expert (or
/// every expert, if all of them take less).
uint64_t weights_budget(const std::string& file, uint64_t budget_bytes, const MemoryParts& parts,
                        const offload::ModelIdentity& id);

/// Smallest budget weights_budget accepts for `parts` and `id`, bytes.
uint64_t min_budget(const MemoryParts& parts, const offload::ModelIdentity& id);

/// The table `plan` and `run -v` print: one line per part, then the total against budget_bytes (0: no
/// budget given). Lines end with '\n'; `indent` starts each line.
std::string memory_table(const MemoryParts& parts, uint64_t budget_bytes, const std::string& indent = "  ");

}  // namespace moetier::tiered
