// cache_sim: replays a routing trace (ours or the Mixtral format) through the expert cache's eviction
// policies and Belady's optimum, for each given number of slots, and prints the hit rates.
//
//   cache_sim TRACE --slots 32,64,128 [--half-life 1024] [--pin-top K]
//
// Requests are in decode order (sequence, token, layer); one slot pool serves all layers; the experts of
// one (token, layer) step are used together and never evict each other (see offload/cache_sim.hpp).
// --pin-top K pins the K experts most routed in the trace itself (an upper bound on what a plan made from
// a representative trace could do).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "offload/cache_sim.hpp"
#include "offload/routing_trace.hpp"

using namespace moetier::offload;

int main(int argc, char** argv) {
  CLI::App app{"cache_sim: hit rates of the expert cache's eviction policies vs Belady on a routing trace"};
  std::string trace_path;
  std::vector<size_t> slots;
  double half_life = 1024.0;
  size_t pin_top = 0;
  app.add_option("trace", trace_path, "routing trace (.jsonl, ours or Mixtral format)")->required();
  app.add_option("--slots", slots, "numbers of cache slots (comma separated)")->required()->delimiter(',');
  app.add_option("--half-life", half_life, "freq_decay half life, in requests");
  app.add_option("--pin-top", pin_top, "pin the K most routed experts of the trace");
  CLI11_PARSE(app, argc, argv);
  try {
    const RoutingTrace trace = read_any_trace(trace_path);
    const std::vector<ExpertRequest> req = trace.decode_order();
    const int32_t n_layers = trace.n_layers(), n_experts = trace.n_experts();
    fmt::print("{}: {} records, {} requests, {} layers x {} experts ({} distinct experts)\n", trace_path,
               trace.records.size(), req.size(), n_layers, n_experts, static_cast<int64_t>(n_layers) * n_experts);
    std::vector<ExpertId> pinned;
    if (pin_top > 0) {
      const auto counts = trace.usage_counts(n_layers, n_experts);
      std::vector<std::pair<uint64_t, ExpertId>> all;
      for (int32_t l = 0; l < n_layers; ++l)
        for (int32_t e = 0; e < n_experts; ++e) all.push_back({counts[l][e], ExpertId{l, e}});
      std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      for (size_t i = 0; i < std::min(pin_top, all.size()); ++i) pinned.push_back(all[i].second);
      fmt::print("pinned: the {} most routed experts\n", pinned.size());
    }
    PolicyParams params;
    params.half_life_ticks = half_life;
    const std::vector<SimResult> res = simulate_all(req, slots, params, pinned);
    fmt::print("{:>7} {:>8} | {:>8} {:>8} {:>10} | {:>8}\n", "slots", "of all", "lru", "lfu", "freq_decay", "belady");
    for (size_t i = 0; i + 3 < res.size(); i += 4) {
      const double frac = 100.0 * static_cast<double>(res[i].n_slots) / (static_cast<double>(n_layers) * n_experts);
      fmt::print("{:>7} {:>7.1f}% | {:>7.2f}% {:>7.2f}% {:>9.2f}% | {:>7.2f}%\n", res[i].n_slots, frac,
                 100 * res[i].hit_rate(), 100 * res[i + 1].hit_rate(), 100 * res[i + 2].hit_rate(),
                 100 * res[i + 3].hit_rate());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
