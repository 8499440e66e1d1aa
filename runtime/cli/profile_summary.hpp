// The summary of `moetier profile`: from the traced generation's events (common/trace_events.hpp) and the
// run's counters, per tier the bytes each decode token moved, the achieved GB/s against the ceiling, the
// decode time split (attention / expert FFNs / rest, as `bench` splits it), the expert cache's demands,
// the next-layer prediction's accuracy, and the tracing overhead. Written as summary.json (schema
// moetier.profile/1) and printed as a table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/trace_events.hpp"
#include "runtime/models/model.hpp"

namespace moetier::tiered {
class TieredExperts;
class DeviceTier;
}  // namespace moetier::tiered

namespace moetier::cli {

/// Cumulative counters of the model, the expert cache and the device (units: ns, bytes, counts).
struct Counters {
  uint64_t attention_ns = 0, ffn_ns = 0, expert_cpu_ns = 0;  // Model::phase_times, executor layer stats
  uint64_t hits = 0, prefetched = 0, misses = 0;             // TieredExperts demands
  uint64_t bytes_read = 0, stall_ns = 0, evictions = 0;      // ExpertCache totals
  uint64_t predicted = 0, correct = 0;                       // next-layer prediction
  uint64_t device_groups = 0, device_busy_ns = 0;
};
/// Reads them now (streamed / device may be nullptr).
Counters read_counters(const models::Model& model, const tiered::TieredExperts* streamed, tiered::DeviceTier* device);
/// after - before, field by field.
Counters diff(const Counters& after, const Counters& before);

struct ProfileInputs {
  std::string model, arch, device_name, machine_file;
  int threads = 0;
  int32_t n_prompt = 0, n_generated = 0;
  double traced_tps = 0;                  ///< decode tokens/s of the traced run (GenerateStats::gen_tps)
  std::vector<double> baseline_tps;       ///< the same generation untraced
  double dram_gbps = 0;                   ///< measured read bandwidth
  double disk_ceiling_gbps = 0;           ///< from --machine; 0: none
  uint64_t non_ffn_bytes_per_token = 0;   ///< weights a decode token reads outside the FFNs (attention, router, norms, LM head, one embedding row)
  bool streamed = false;                  ///< some experts stream from NVMe
  uint64_t cache_slots = 0, cache_slot_bytes = 0;  ///< the DRAM cache of streamed experts
  Counters whole_run;                     ///< counters over the traced generation (prompt and decode)
  uint64_t dropped_events = 0;
  double ns_per_event_on = 0;             ///< measured cost of one recorded Scope (tracing on)
  double ns_per_scope_off = 0;            ///< measured cost of one Scope while tracing is off
};

struct TierFigures {
  std::string tier;                 ///< "dram", "nvme", or the device's name
  double bytes_per_token = 0;
  double achieved_gbps = 0;         ///< bytes_per_token x decode tokens/s
  double ceiling_gbps = 0;          ///< 0: unknown
  std::string ceiling_from;
  double own_rate_gbps = 0;         ///< nvme: bytes / time with reads in flight
};

struct ProfileSummary {
  ProfileInputs in;
  int64_t decode_steps = 0;         ///< forward steps of one token after the prompt's
  double decode_window_ms = 0;      ///< first decode step's begin to the last one's end
  double share_attention = 0, share_experts = 0, share_rest = 0;  ///< of the window; sum to 1
  double share_router = 0, share_io_stall = 0, share_device_wait = 0;  ///< parts of share_rest
  std::vector<TierFigures> tiers;
  uint64_t decode_hits = 0, decode_prefetched = 0, decode_misses = 0;  ///< demands in the window
  uint64_t decode_read_bytes = 0, decode_reads = 0;
  uint64_t trace_read_bytes = 0;    ///< bytes of every read event of the trace (whole run)
  size_t n_events = 0, n_tracks = 0;
  size_t decode_events = 0;         ///< events that began in the decode window
  /// decode_events x ns_per_event_on / decode window x 100: the tracing overhead the recorder's own cost
  /// predicts (an upper bound: part of it is on idle workers), steadier than the measured one on a busy machine.
  double estimated_overhead_pct() const;
  double baseline_tps() const;
  double overhead_pct() const;      ///< (baseline - traced) / baseline x 100; 0 without a baseline
};

/// Computes the summary from the traced run's events (see the file comment).
ProfileSummary summarize(const ProfileInputs& in, const std::vector<trace::ThreadEvents>& events);
nlohmann::json summary_json(const ProfileSummary& s);
/// The table printed on stdout.
std::string summary_table(const ProfileSummary& s);

}  // namespace moetier::cli
