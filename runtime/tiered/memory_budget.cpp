#include "runtime/tiered/memory_budget.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "common/error.hpp"
#include "offload/slot_layout.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "runtime/tiered/tiered_experts.hpp"

namespace moetier::tiered {

namespace {

uint64_t all_expert_bytes(const offload::ModelIdentity& id) {
  uint64_t n = 0;
  for (uint64_t b : id.expert_bytes) n += b * static_cast<uint64_t>(id.n_experts);
  return n;
}

std::string both(uint64_t bytes) { return fmt::format("{} ({} bytes)", models::format_bytes(bytes), bytes); }

}  // namespace

uint64_t current_rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<uint64_t>(resident) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

uint64_t io_state_bytes(unsigned queue_depth) {
  const uint64_t qd = std::max(queue_depth, 1u);
  // Rings: 64-byte submission and 2 x 16-byte completion entries; bookkeeping of a read: ~256 bytes.
  const uint64_t rings = offload::align_up(qd * (64 + 2 * 16 + 256));
  // The pread fallback's threads: stack pages touched and a malloc arena each (~64 KiB).
  const uint64_t threads = std::min<uint64_t>(qd, 16) * (64u << 10);
  return rings + threads;
}

MemoryParts process_parts(const models::Model& model, int64_t n_ctx, int64_t n_batch, int n_workers,
                          unsigned queue_depth, uint64_t metadata_bytes) {
  MemoryParts p;
  p.n_ctx = std::max<int64_t>(n_ctx, 1);
  p.n_batch = std::clamp<int64_t>(n_batch, 1, p.n_ctx);
  p.kv_cache = model.kv_cache_bytes(p.n_ctx);
  p.scratch = model.scratch_bytes(p.n_batch, p.n_ctx, n_workers);
  p.io = io_state_bytes(queue_depth);
  // Rounded up to whole MiB: the measurement moves by a few hundred KiB from run to run (allocator and
  // page-cache noise), and a plan must not change with it (the same budget gave 0-2 resident experts).
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  p.metadata = (metadata_bytes + kMiB - 1) / kMiB * kMiB;
  p.n_workers = std::max(n_workers, 1);
  p.fixed = kFixedOverheadBytes + static_cast<uint64_t>(p.n_workers) * kWorkerOverheadBytes;
  p.non_expert = non_expert_bytes(model);
  return p;
}

void add_plan_parts(MemoryParts& parts, const offload::PlacementPlan& plan, uint64_t slot_bytes) {
  parts.resident_experts = plan.bytes_on(offload::Tier::Kind::Dram);
  parts.n_resident_experts = plan.experts_on(offload::Tier::Kind::Dram).size();
  const bool streams = plan.bytes_on(offload::Tier::Kind::Nvme) > 0;
  parts.expert_cache = streams ? plan.cache_bytes : 0;
  parts.n_cache_slots = streams && slot_bytes > 0 ? static_cast<size_t>(plan.cache_bytes / slot_bytes) : 0;
  if (!streams) parts.io = 0;
}

void add_all_resident(MemoryParts& parts, const offload::ModelIdentity& id) {
  parts.resident_experts = all_expert_bytes(id);
  parts.n_resident_experts = 0;
  for (uint64_t b : id.expert_bytes) parts.n_resident_experts += b > 0 ? static_cast<size_t>(id.n_experts) : 0;
  parts.expert_cache = 0;
  parts.n_cache_slots = 0;
  parts.io = 0;
}

uint64_t min_budget(const MemoryParts& parts, const offload::ModelIdentity& id) {
  return parts.reserved() + parts.non_expert + std::min(all_expert_bytes(id), offload::planned_slot_bytes(id));
}

uint64_t weights_budget(const std::string& file, uint64_t budget_bytes, const MemoryParts& parts,
                        const offload::ModelIdentity& id) {
  const uint64_t need = min_budget(parts, id);
  if (budget_bytes < need) {
    const uint64_t experts = need - parts.reserved() - parts.non_expert;
    const uint64_t mib = 1ull << 20;
    const uint64_t give_mib = (need + mib / 2 + mib - 1) / mib;
    fail("{}: --ram-budget {} cannot hold this run: non-expert weights {} + {} {} + KV cache for {} positions {} + "
         "scratch for a batch of {} tokens {} + I/O {} + metadata and tokenizer {} + fixed overhead {} = {}; give "
         "--ram-budget {}MiB or more, or a smaller -c",
         file, both(budget_bytes), both(parts.non_expert),
         experts == all_expert_bytes(id) ? "every routed expert" : "one streamed expert", models::format_bytes(experts),
         parts.n_ctx, models::format_bytes(parts.kv_cache), parts.n_batch, models::format_bytes(parts.scratch),
         models::format_bytes(parts.io), models::format_bytes(parts.metadata), models::format_bytes(parts.fixed),
         both(need), give_mib);
  }
  return budget_bytes - parts.reserved();
}

std::string memory_table(const MemoryParts& p, uint64_t budget_bytes, const std::string& indent) {
  std::string s;
  const auto line = [&](const std::string& what, uint64_t bytes) {
    s += fmt::format("{}{:<36} {:>10}\n", indent, what, models::format_bytes(bytes));
  };
  line("non-expert weights", p.non_expert);
  line(fmt::format("resident experts ({})", p.n_resident_experts), p.resident_experts);
  line(fmt::format("expert cache ({} slots)", p.n_cache_slots), p.expert_cache);
  line(fmt::format("KV cache (n_ctx {})", p.n_ctx), p.kv_cache);
  line(fmt::format("scratch (batch of {} tokens)", p.n_batch), p.scratch);
  line("I/O slots (reader state)", p.io);
  line("metadata + tokenizer (measured)", p.metadata);
  line(fmt::format("fixed overhead ({} threads)", p.n_workers), p.fixed);
  s += fmt::format("{}{:<36} {:>10}{}\n", indent, "total", models::format_bytes(p.total()),
                   budget_bytes > 0 ? fmt::format(" of --ram-budget {}", models::format_bytes(budget_bytes))
                                    : std::string(" (no --ram-budget)"));
  return s;
}

}  // namespace moetier::tiered
