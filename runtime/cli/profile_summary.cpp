// The summary of `moetier profile` (see profile_summary.hpp).
#include "runtime/cli/profile_summary.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <string_view>
#include <utility>

#include "runtime/cli/profile_trace.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "runtime/tiered/device_tier.hpp"
#include "runtime/tiered/tiered_experts.hpp"

namespace moetier::cli {
namespace {

bool is(const char* s, std::string_view want) { return s != nullptr && want == s; }

int64_t arg_of(const trace::Event& e, std::string_view key, int64_t dflt = 0) {
  for (int i = 0; i < e.n_args; ++i)
    if (is(e.args[i].key, key)) return e.args[i].value;
  return dflt;
}

/// Total length of the union of [begin, end) intervals.
int64_t union_ns(std::vector<std::pair<int64_t, int64_t>> iv) {
  std::sort(iv.begin(), iv.end());
  int64_t total = 0, cur_b = 0, cur_e = 0;
  bool open = false;
  for (const auto& [b, e] : iv) {
    if (!open || b > cur_e) {
      if (open) total += cur_e - cur_b;
      cur_b = b;
      cur_e = e;
      open = true;
    } else {
      cur_e = std::max(cur_e, e);
    }
  }
  if (open) total += cur_e - cur_b;
  return total;
}

double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

}  // namespace

Counters read_counters(const models::Model& model, const tiered::TieredExperts* streamed, tiered::DeviceTier* device) {
  Counters c;
  c.attention_ns = model.phase_times().attention_ns;
  c.ffn_ns = model.phase_times().ffn_ns;
  for (const auto& l : model.executor().layer_stats()) c.expert_cpu_ns += l.cpu_ns;
  c.predicted = model.prediction_stats().predicted;
  c.correct = model.prediction_stats().correct;
  if (streamed && streamed->cache()) {
    const auto d = streamed->total_demand();
    c.hits = d.hits;
    c.prefetched = d.prefetched;
    c.misses = d.misses;
    const auto t = streamed->cache()->total_stats();
    c.bytes_read = t.bytes_read;
    c.stall_ns = t.stall_ns;
    c.evictions = t.evictions;
  }
  if (device) {
    const auto b = device->device().stats();
    c.device_groups = b.groups;
    c.device_busy_ns = b.busy_ns;
  }
  return c;
}

Counters diff(const Counters& a, const Counters& b) {
  Counters d;
  d.attention_ns = a.attention_ns - b.attention_ns;
  d.ffn_ns = a.ffn_ns - b.ffn_ns;
  d.expert_cpu_ns = a.expert_cpu_ns - b.expert_cpu_ns;
  d.hits = a.hits - b.hits;
  d.prefetched = a.prefetched - b.prefetched;
  d.misses = a.misses - b.misses;
  d.bytes_read = a.bytes_read - b.bytes_read;
  d.stall_ns = a.stall_ns - b.stall_ns;
  d.evictions = a.evictions - b.evictions;
  d.predicted = a.predicted - b.predicted;
  d.correct = a.correct - b.correct;
  d.device_groups = a.device_groups - b.device_groups;
  d.device_busy_ns = a.device_busy_ns - b.device_busy_ns;
  return d;
}

double ProfileSummary::baseline_tps() const {
  if (in.baseline_tps.empty()) return 0;
  double s = 0;
  for (double x : in.baseline_tps) s += x;
  return s / static_cast<double>(in.baseline_tps.size());
}

double ProfileSummary::overhead_pct() const {
  const double b = baseline_tps();
  return b > 0 && in.traced_tps > 0 ? (b - in.traced_tps) / b * 100.0 : 0.0;
}

double ProfileSummary::estimated_overhead_pct() const {
  return decode_window_ms > 0 ? static_cast<double>(decode_events) * in.ns_per_event_on / (decode_window_ms * 1e6) * 100.0 : 0.0;
}

ProfileSummary summarize(const ProfileInputs& in, const std::vector<trace::ThreadEvents>& events) {
  ProfileSummary s;
  s.in = in;
  // Decode steps: one-token forward steps after the first step (the prompt's).
  std::vector<std::pair<int64_t, int64_t>> steps;
  std::set<int32_t> tracks;
  for (const auto& t : events)
    for (const auto& e : t.events) {
      ++s.n_events;
      tracks.insert(e.track);
      if (is(e.cat, "model") && is(e.name, "forward")) steps.emplace_back(e.begin_ns, arg_of(e, "tokens"));
      if (is(e.name, "read") && is(e.cat, "io")) s.trace_read_bytes += static_cast<uint64_t>(arg_of(e, "bytes"));
    }
  std::vector<trace::Event> io;  // the I/O track is spread over lanes in trace.json: count those
  for (const auto& t : events)
    for (const auto& e : t.events)
      if (e.track == trace::kIoTrack) io.push_back(e);
  const auto lanes = assign_lanes(io);
  tracks.erase(trace::kIoTrack);
  s.n_tracks = tracks.size() + (lanes.empty() ? 0 : static_cast<size_t>(*std::max_element(lanes.begin(), lanes.end()) + 1));
  std::sort(steps.begin(), steps.end());
  int64_t w0 = 0, w1 = 0;
  for (size_t i = 1; i < steps.size(); ++i)
    if (steps[i].second == 1) {
      if (s.decode_steps == 0) w0 = steps[i].first;
      ++s.decode_steps;
    }
  for (const auto& t : events)  // the window ends where the last decode step ends
    for (const auto& e : t.events)
      if (s.decode_steps > 0 && is(e.name, "forward") && e.begin_ns >= w0) w1 = std::max(w1, e.begin_ns + e.dur_ns);

  int64_t attention = 0, experts = 0, router = 0, stall = 0, device_wait = 0;
  double dram_bytes = 0, device_bytes = 0;
  std::vector<std::pair<int64_t, int64_t>> reads;
  for (const auto& t : events)
    for (const auto& e : t.events) {
      if (s.decode_steps == 0 || e.begin_ns < w0 || e.begin_ns >= w1) continue;
      ++s.decode_events;
      if (is(e.cat, "attention")) attention += e.dur_ns;
      else if (is(e.cat, "experts")) {
        experts += e.dur_ns;
        dram_bytes += static_cast<double>(arg_of(e, "bytes"));
      } else if (is(e.cat, "device") && !is(e.name, "wait")) {
        device_bytes += static_cast<double>(arg_of(e, "bytes"));
      } else if (is(e.cat, "router")) {
        router += e.dur_ns;
      } else if (is(e.name, "stall")) {
        stall += e.dur_ns;
      } else if (is(e.name, "device wait")) {
        device_wait += e.dur_ns;
      } else if (is(e.name, "read") && is(e.cat, "io")) {
        ++s.decode_reads;
        s.decode_read_bytes += static_cast<uint64_t>(arg_of(e, "bytes"));
        reads.emplace_back(e.begin_ns, e.begin_ns + e.dur_ns);
      } else if (is(e.name, "demand")) {
        const std::string_view r = e.str_value ? e.str_value : "";
        (r == "hit" ? s.decode_hits : r == "prefetched" ? s.decode_prefetched : s.decode_misses) += 1;
      }
    }
  const double window = static_cast<double>(w1 - w0);
  s.decode_window_ms = window / 1e6;
  s.share_attention = ratio(static_cast<double>(attention), window);
  s.share_experts = ratio(static_cast<double>(experts), window);
  s.share_rest = window > 0 ? 1.0 - s.share_attention - s.share_experts : 0.0;
  s.share_router = ratio(static_cast<double>(router), window);
  s.share_io_stall = ratio(static_cast<double>(stall), window);
  s.share_device_wait = ratio(static_cast<double>(device_wait), window);

  const double n = static_cast<double>(std::max<int64_t>(s.decode_steps, 1));
  const double tps = in.traced_tps;
  TierFigures dram;
  dram.tier = "dram";
  dram.bytes_per_token = static_cast<double>(in.non_ffn_bytes_per_token) + dram_bytes / n;
  dram.achieved_gbps = dram.bytes_per_token * tps / 1e9;
  dram.ceiling_gbps = in.dram_gbps;
  dram.ceiling_from = "read bandwidth measured at the start (scheduler/bandwidth.hpp)";
  s.tiers.push_back(dram);
  if (in.streamed) {
    TierFigures nv;
    nv.tier = "nvme";
    nv.bytes_per_token = static_cast<double>(s.decode_read_bytes) / n;
    nv.achieved_gbps = nv.bytes_per_token * tps / 1e9;
    const int64_t busy = union_ns(reads);
    nv.own_rate_gbps = busy > 0 ? static_cast<double>(s.decode_read_bytes) / static_cast<double>(busy) : 0.0;
    if (in.disk_ceiling_gbps > 0) {
      nv.ceiling_gbps = in.disk_ceiling_gbps;
      nv.ceiling_from = "machine profile " + in.machine_file;
    } else {
      nv.ceiling_gbps = nv.own_rate_gbps;
      nv.ceiling_from = "the reads' own rate while in flight (no --machine profile)";
    }
    s.tiers.push_back(nv);
  }
  if (!in.device_name.empty()) {
    TierFigures dv;
    dv.tier = in.device_name;
    dv.bytes_per_token = device_bytes / n;
    dv.achieved_gbps = dv.bytes_per_token * tps / 1e9;
    dv.ceiling_from = "unknown (no device rate measured)";
    s.tiers.push_back(dv);
  }
  return s;
}

nlohmann::json summary_json(const ProfileSummary& s) {
  using nlohmann::json;
  const ProfileInputs& in = s.in;
  const Counters& c = in.whole_run;
  json tiers = json::array();
  for (const auto& t : s.tiers) {
    json j = {{"tier", t.tier},
              {"bytes_per_token", t.bytes_per_token},
              {"achieved_gbps", t.achieved_gbps},
              {"ceiling_gbps", t.ceiling_gbps > 0 ? json(t.ceiling_gbps) : json(nullptr)},
              {"pct_of_ceiling", t.ceiling_gbps > 0 ? json(100.0 * t.achieved_gbps / t.ceiling_gbps) : json(nullptr)},
              {"ceiling_from", t.ceiling_from}};
    if (t.tier == "nvme") j["reads_own_rate_gbps"] = t.own_rate_gbps;
    tiers.push_back(j);
  }
  const uint64_t req = c.hits + c.prefetched + c.misses;
  json j;
  j["schema"] = "moetier.profile/1";
  j["model"] = in.model;
  j["arch"] = in.arch;
  j["threads"] = in.threads;
  j["prompt_tokens"] = in.n_prompt;
  j["generated_tokens"] = in.n_generated;
  j["decode"] = {{"tokens_per_s_traced", in.traced_tps},
                 {"tokens_per_s_untraced", s.baseline_tps() > 0 ? json(s.baseline_tps()) : json(nullptr)},
                 {"untraced_runs_tokens_per_s", in.baseline_tps},
                 {"tracing_overhead_pct", in.baseline_tps.empty() ? json(nullptr) : json(s.overhead_pct())},
                 {"tracing_overhead_estimated_pct", s.estimated_overhead_pct()},
                 {"events", s.decode_events},
                 {"steps", s.decode_steps},
                 {"window_ms", s.decode_window_ms}};
  j["ceilings"] = {{"dram_read_gbps", in.dram_gbps},
                   {"disk_read_gbps", in.disk_ceiling_gbps > 0 ? json(in.disk_ceiling_gbps) : json(nullptr)},
                   {"machine_profile", in.machine_file.empty() ? json(nullptr) : json(in.machine_file)}};
  j["tiers"] = tiers;
  j["time_share"] = {{"attention", s.share_attention},
                     {"experts", s.share_experts},
                     {"rest", s.share_rest},
                     {"rest_includes", {{"router", s.share_router}, {"io_stall", s.share_io_stall}, {"device_wait", s.share_device_wait}}}};
  j["expert_cache"] = {
      {"streamed", in.streamed},
      {"slots", in.cache_slots},
      {"slot_bytes", in.cache_slot_bytes},
      {"decode", {{"hits", s.decode_hits}, {"prefetched", s.decode_prefetched}, {"misses", s.decode_misses},
                  {"reads", s.decode_reads}, {"bytes_read", s.decode_read_bytes}}},
      {"whole_run", {{"requests", req}, {"hits", c.hits}, {"prefetched", c.prefetched}, {"misses", c.misses},
                     {"hit_rate", req ? json(static_cast<double>(c.hits) / static_cast<double>(req)) : json(nullptr)},
                     {"bytes_read", c.bytes_read}, {"stall_ms", static_cast<double>(c.stall_ns) / 1e6},
                     {"evictions", c.evictions}}}};
  j["prediction"] = {{"predicted", c.predicted}, {"correct", c.correct},
                     {"accuracy", c.predicted ? json(static_cast<double>(c.correct) / static_cast<double>(c.predicted)) : json(nullptr)}};
  j["counters_whole_run_ms"] = {{"attention", static_cast<double>(c.attention_ns) / 1e6},
                                {"ffn", static_cast<double>(c.ffn_ns) / 1e6},
                                {"expert_compute", static_cast<double>(c.expert_cpu_ns) / 1e6},
                                {"device_busy", static_cast<double>(c.device_busy_ns) / 1e6}};
  j["trace"] = {{"events", s.n_events}, {"tracks", s.n_tracks}, {"dropped_events", in.dropped_events},
                {"ns_per_event_on", in.ns_per_event_on}, {"ns_per_scope_off", in.ns_per_scope_off},
                {"read_bytes", s.trace_read_bytes}};
  return j;
}

std::string summary_table(const ProfileSummary& s) {
  const ProfileInputs& in = s.in;
  std::string out = fmt::format("profile: {} ({}), {} threads, {} prompt + {} generated tokens\n", in.model, in.arch,
                                in.threads, in.n_prompt, in.n_generated);
  if (in.baseline_tps.empty()) {
    out += fmt::format("decode: {:.2f} tokens/s traced (no untraced run: --baseline-runs 0)\n", in.traced_tps);
  } else {
    std::string runs;
    for (double x : in.baseline_tps) runs += fmt::format("{}{:.2f}", runs.empty() ? "" : " ", x);
    out += fmt::format("decode: {:.2f} tokens/s traced, {:.2f} untraced (mean of {} runs: {}) -> measured tracing "
                       "overhead {:+.1f}%\n",
                       in.traced_tps, s.baseline_tps(), in.baseline_tps.size(), runs, s.overhead_pct());
  }
  out += fmt::format("tracing cost: {:.0f} ns per event on, {:.1f} ns per probe off; {} events in decode -> estimated "
                     "overhead {:.2f}%\n",
                     in.ns_per_event_on, in.ns_per_scope_off, s.decode_events, s.estimated_overhead_pct());
  if (s.decode_steps == 0)
    out += "no decode step was traced (the generation stopped at its first token): the figures below are empty\n";
  out += fmt::format("\n| {:<8} | {:>12} | {:>13} | {:>12} | {:>12} | {}\n", "tier", "bytes/token", "achieved GB/s",
                     "ceiling GB/s", "% of ceiling", "ceiling from");
  out += "|----------|--------------|---------------|--------------|--------------|-------------\n";
  for (const auto& t : s.tiers)
    out += fmt::format("| {:<8} | {:>12} | {:>13.2f} | {:>12} | {:>12} | {}\n", t.tier,
                       models::format_bytes(static_cast<uint64_t>(t.bytes_per_token)), t.achieved_gbps,
                       t.ceiling_gbps > 0 ? fmt::format("{:.2f}", t.ceiling_gbps) : "-",
                       t.ceiling_gbps > 0 ? fmt::format("{:.1f}%", 100.0 * t.achieved_gbps / t.ceiling_gbps) : "-",
                       t.ceiling_from);
  out += fmt::format("\ndecode time ({} steps, {:.1f} ms): attention {:.1f}% | expert FFNs {:.1f}% | rest {:.1f}% "
                     "(of which router {:.1f}%, I/O stalls {:.1f}%, device waits {:.1f}%)\n",
                     s.decode_steps, s.decode_window_ms, 100 * s.share_attention, 100 * s.share_experts,
                     100 * s.share_rest, 100 * s.share_router, 100 * s.share_io_stall, 100 * s.share_device_wait);
  if (in.streamed) {
    const uint64_t req = s.decode_hits + s.decode_prefetched + s.decode_misses;
    const double r = static_cast<double>(std::max<uint64_t>(req, 1));
    out += fmt::format("expert cache ({} slots of {}, decode): {} demands: {:.1f}% hits, {:.1f}% prefetched, {:.1f}% misses; {} reads, {}\n",
                       in.cache_slots, models::format_bytes(in.cache_slot_bytes), req,
                       100.0 * static_cast<double>(s.decode_hits) / r, 100.0 * static_cast<double>(s.decode_prefetched) / r,
                       100.0 * static_cast<double>(s.decode_misses) / r, s.decode_reads, models::format_bytes(s.decode_read_bytes));
  }
  const Counters& c = in.whole_run;
  if (c.predicted)
    out += fmt::format("next-layer prediction: {:.1f}% right ({} of {} predicted experts were routed)\n",
                       100.0 * static_cast<double>(c.correct) / static_cast<double>(c.predicted), c.correct, c.predicted);
  out += fmt::format("trace: {} events on {} tracks{}\n", s.n_events, s.n_tracks,
                     in.dropped_events ? fmt::format(" ({} dropped)", in.dropped_events) : "");
  return out;
}

}  // namespace moetier::cli
