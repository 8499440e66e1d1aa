// `moetier plan --search` (see plan_eval.hpp): the alternatives that matter, ranked by predicted decode speed.
#include <algorithm>
#include <cstdio>
#include <set>

#include "common/error.hpp"
#include "offload/eviction_policy.hpp"
#include "runtime/cli/plan_eval.hpp"
#include "runtime/models/size_breakdown.hpp"

namespace moetier::cli {
namespace {

struct Candidate {
  std::string placement, policy;
  int parallel = 1;
  PlanEval eval;
};

}  // namespace

void search_plans(const PlanContext& c, const TierOptions& given, const tuning::MachineProfile& m, const PlanEval& given_eval,
                  const std::string& out) {
  const uint64_t budget = given_eval.pr.ram_budget_bytes;
  const size_t n_experts = given_eval.pr.plan.model.expert_bytes.size() * static_cast<size_t>(c.model->hparams().n_expert);
  // Placements: the one given, then experts on NVMe 0..100 % with caches of 1/16..1/2 of the streamed experts.
  std::vector<std::pair<std::string, TierOptions>> placements{{"as given", given}};
  if (!given.plan.empty()) {
    // A given plan is evaluated as it is.
  } else if (given_eval.pr.device.enabled) {
    // A device: its non-expert FFNs (shared experts, dense FFNs: what plan_with_vram can put there; attention
    // weights and the KV cache stay on the host while no device backend computes attention) on it or
    // not, and the experts it takes limited to 0..100 % of the VRAM the FFNs leave.
    // What a plan may put there (--vram-budget, else the sim capacity; --device-slots already taken off).
    const uint64_t vram = given_eval.pr.device.vram_budget_bytes, slots = given_eval.pr.device.slot_bytes;
    const uint64_t ffn = given_eval.pr.device_non_expert_bytes;
    for (const bool on : {true, false}) {
      if (on && (ffn == 0 || ffn > vram)) continue;  // nothing to put there, or it does not fit
      for (const int pct : {0, 25, 50, 75, 100}) {
        const uint64_t rest = vram - (on ? ffn : 0);
        const uint64_t budget = (on ? ffn : 0) + static_cast<uint64_t>(static_cast<double>(rest) * pct / 100.0);
        if (budget == 0) continue;  // no device at all: not a device plan
        TierOptions t = given;
        t.vram_budget = std::to_string(budget + slots);
        t.device_non_expert = on;
        placements.push_back({on ? fmt::format("device FFNs, experts {}% of rest", pct)
                                 : fmt::format("host FFNs, experts {}% of VRAM", pct), t});
      }
    }
  } else {
    for (const char* f : {"0", "0.25", "0.5", "0.75", "all"}) {
      TierOptions t = given;
      t.ram_budget.clear();
      t.experts_on_nvme = f;
      t.cache_size.clear();
      if (std::string(f) == "0") {
        placements.push_back({"all experts in DRAM", t});
        continue;
      }
      const double frac = std::string(f) == "all" ? 1.0 : std::stod(f);
      for (int div : {16, 8, 4, 2}) {
        const auto slots = static_cast<uint64_t>(std::max(1.0, frac * static_cast<double>(n_experts) / div));
        t.cache_size = std::to_string(slots);
        placements.push_back({fmt::format("{}% on NVMe, cache {} experts", static_cast<int>(frac * 100), slots), t});
      }
    }
  }
  std::vector<std::string> policies{""};
  if (c.trace) policies = {"lru", "lfu", "freq_decay"};
  std::vector<Candidate> all;
  size_t refused = 0;
  std::fprintf(stderr, "plan --search: %zu placements x %zu policies x 4 sequence counts\n", placements.size(), policies.size());
  for (const auto& [name, base] : placements)
    for (const std::string& pol : policies)
      for (int par : {1, 2, 4, 8}) {
        TierOptions t = base;
        if (!pol.empty()) t.cache_policy = pol;
        PlanContext cc = c;
        cc.shape.parallel = par;
        try {
          PlanEval e = evaluate_plan(cc, t, m, false);
          if (budget > 0 && e.mem.total() > budget) {
            ++refused;
            continue;
          }
          all.push_back({name, std::string(offload::policy_name(e.pr.plan.cache_policy)), par, std::move(e)});
        } catch (const Error&) {
          ++refused;  // a budget that cannot hold this candidate
        }
      }
  if (all.empty()) fail("plan --search: no alternative fits{}", budget > 0 ? " the --ram-budget" : "");
  std::stable_sort(all.begin(), all.end(),
                   [](const Candidate& a, const Candidate& b) { return a.eval.pred.decode_tps > b.eval.pred.decode_tps; });
  std::printf("%-4s %-36s %-10s %3s %10s %10s %9s %12s %12s  %s\n", "rank", "placement", "policy", "seq", "decode t/s",
              "prompt t/s", "hit rate", "DRAM used", "NVMe", "binds");
  // The first 20, and every placement's best row below them.
  std::set<std::string> seen;
  size_t shown = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    const Candidate& k = all[i];
    if (i >= 20 && seen.count(k.placement)) continue;
    seen.insert(k.placement);
    ++shown;
    std::printf("%-4zu %-36s %-10s %3d %10.2f %10.2f %8.0f%% %12s %12s  %s\n", i + 1, k.placement.c_str(), k.policy.c_str(),
                k.parallel, k.eval.pred.decode_tps, k.eval.pred.prompt_tps, 100 * k.eval.hit_rate,
                models::format_bytes(k.eval.mem.total()).c_str(),
                models::format_bytes(k.eval.pr.plan.bytes_on(offload::Tier::Kind::Nvme)).c_str(), k.eval.pred.binds.c_str());
  }
  std::printf("%zu alternatives ranked (%zu shown: the first 20 and each placement's best), %zu refused (over --ram-budget or not plannable); decode t/s counts "
              "every sequence\n",
              all.size(), shown, refused);
  if (!out.empty()) {
    offload::write_placement_plan(out, all.front().eval.pr.plan);
    std::printf("best plan written to %s (%s, %s, %d sequence(s))\n", out.c_str(), all.front().placement.c_str(),
                all.front().policy.c_str(), all.front().parallel);
  }
}

}  // namespace moetier::cli
