// CPU topology from hwloc (see topology.hpp). hwloc API: hwloc_topology_set_synthetic,
// hwloc_topology_get_allowed_cpuset, hwloc_get_cpubind(HWLOC_CPUBIND_PROCESS) (hwloc 2.x documentation).
#include "scheduler/topology.hpp"

#include "common/error.hpp"

#include <hwloc.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

namespace moetier::sched {
namespace {

struct TopologyDeleter {
  void operator()(hwloc_topology* t) const { hwloc_topology_destroy(t); }
};
using TopologyPtr = std::unique_ptr<hwloc_topology, TopologyDeleter>;

struct BitmapDeleter {
  void operator()(hwloc_bitmap_s* b) const { hwloc_bitmap_free(b); }
};
using BitmapPtr = std::unique_ptr<hwloc_bitmap_s, BitmapDeleter>;

BitmapPtr new_bitmap() {
  BitmapPtr b(hwloc_bitmap_alloc());
  if (!b) fail("hwloc: out of memory allocating a cpuset");
  return b;
}

std::string bitmap_list(hwloc_const_bitmap_t b) {
  char* s = nullptr;
  hwloc_bitmap_list_asprintf(&s, b);
  std::string out = s ? s : "?";
  std::free(s);
  return out;
}

TopologyPtr load_topology(const TopologyOptions& options) {
  hwloc_topology_t raw = nullptr;
  if (hwloc_topology_init(&raw) != 0) fail("hwloc_topology_init failed");
  TopologyPtr topo(raw);
  if (!options.synthetic.empty() && hwloc_topology_set_synthetic(raw, options.synthetic.c_str()) != 0)
    fail("hwloc: invalid synthetic topology description '{}'", options.synthetic);
  if (hwloc_topology_load(raw) != 0)
    fail("hwloc_topology_load failed{}", options.synthetic.empty() ? "" : " for '" + options.synthetic + "'");
  return topo;
}

// The PUs this process may use: hwloc's allowed cpuset (cgroup cpuset) intersected with the override or
// with the process binding (union of all threads' affinities, as sched_getaffinity per thread).
BitmapPtr allowed_cpuset(hwloc_topology_t topo, const TopologyOptions& options, bool this_system) {
  BitmapPtr allowed = new_bitmap();
  hwloc_bitmap_copy(allowed.get(), hwloc_topology_get_allowed_cpuset(topo));
  hwloc_bitmap_and(allowed.get(), allowed.get(), hwloc_topology_get_topology_cpuset(topo));
  if (options.allowed_pus) {
    BitmapPtr want = new_bitmap();
    for (int pu : *options.allowed_pus) {
      if (pu < 0) fail("topology: allowed PU override has negative index {}", pu);
      hwloc_bitmap_set(want.get(), static_cast<unsigned>(pu));
    }
    hwloc_bitmap_and(allowed.get(), allowed.get(), want.get());
    if (hwloc_bitmap_iszero(allowed.get()))
      fail("topology: none of the allowed PUs [{}] exists in the topology ({})", bitmap_list(want.get()),
           bitmap_list(hwloc_topology_get_topology_cpuset(topo)));
  } else if (this_system) {
    BitmapPtr bound = new_bitmap();
    if (hwloc_get_cpubind(topo, bound.get(), HWLOC_CPUBIND_PROCESS) == 0 && !hwloc_bitmap_iszero(bound.get())) {
      BitmapPtr both = new_bitmap();
      hwloc_bitmap_and(both.get(), allowed.get(), bound.get());
      if (!hwloc_bitmap_iszero(both.get())) hwloc_bitmap_copy(allowed.get(), both.get());
    }
  }
  if (hwloc_bitmap_iszero(allowed.get())) fail("topology: no PU is allowed for this process");
  return allowed;
}

// Largest-remainder split of n into parts proportional to weights (ties to the lower index).
std::vector<int> proportional_split(int n, const std::vector<int>& weights) {
  const int64_t total = [&] {
    int64_t t = 0;
    for (int w : weights) t += w;
    return t;
  }();
  std::vector<int> share(weights.size(), 0);
  std::vector<std::pair<int64_t, size_t>> rem;  // (remainder numerator, index)
  int given = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    const int64_t num = static_cast<int64_t>(n) * weights[i];
    share[i] = static_cast<int>(num / total);
    given += share[i];
    rem.emplace_back(num % total, i);
  }
  std::stable_sort(rem.begin(), rem.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t j = 0; given < n; ++j, ++given) share[rem[j].second] += 1;
  return share;
}

}  // namespace

CpuTopology CpuTopology::detect(const TopologyOptions& options) {
  TopologyPtr topo = load_topology(options);
  hwloc_topology_t t = topo.get();
  CpuTopology out;
  out.this_system_ = options.synthetic.empty() && hwloc_topology_is_thissystem(t);
  BitmapPtr allowed = allowed_cpuset(t, options, out.this_system_);

  const int n_hw_nodes = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
  std::map<hwloc_obj_t, int> core_index, package_index;
  std::map<int, int> node_index;  // hwloc logical node index -> dense index
  const int n_hw_pus = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
  for (int i = 0; i < n_hw_pus; ++i) {
    hwloc_obj_t pu = hwloc_get_obj_by_type(t, HWLOC_OBJ_PU, static_cast<unsigned>(i));
    if (!hwloc_bitmap_isset(allowed.get(), pu->os_index)) continue;
    ++out.n_pus_;
    hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_CORE, pu);
    if (!core) core = pu;  // machines without a core level: each PU is its own core
    hwloc_obj_t package = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_PACKAGE, pu);
    int hw_node = 0;  // first NUMA node (logical order) whose cpuset holds this PU
    for (int n = 0; n < n_hw_nodes; ++n) {
      hwloc_obj_t node = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(n));
      if (node->cpuset && hwloc_bitmap_isset(node->cpuset, pu->os_index)) {
        hw_node = n;
        break;
      }
    }
    auto [cit, new_core] = core_index.try_emplace(core, static_cast<int>(out.cores_.size()));
    if (new_core) {
      auto [pit, new_pkg] = package_index.try_emplace(package, static_cast<int>(package_index.size()));
      (void)new_pkg;
      auto [nit, new_node] = node_index.try_emplace(hw_node, static_cast<int>(out.nodes_.size()));
      if (new_node) {
        hwloc_obj_t node = n_hw_nodes > 0 ? hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(hw_node)) : nullptr;
        out.nodes_.push_back(NumaNodeInfo{node ? node->os_index : 0u, {}});
      }
      out.cores_.push_back(CoreInfo{pit->second, nit->second, {}});
      out.nodes_[static_cast<size_t>(nit->second)].cores.push_back(cit->second);
    }
    out.cores_[static_cast<size_t>(cit->second)].pus.push_back(static_cast<int>(pu->os_index));
  }
  out.n_packages_ = static_cast<int>(package_index.size());
  for (auto& c : out.cores_) std::sort(c.pus.begin(), c.pus.end());

  if (options.cpu_limit) {
    if (!(*options.cpu_limit > 0)) fail("topology: CPU limit override must be > 0, got {}", *options.cpu_limit);
    out.cpu_limit_ = options.cpu_limit;
  } else if (out.this_system_) {
    out.cpu_limit_ = cgroup_cpu_limit(options.cgroup_paths);
  }
  return out;
}

int CpuTopology::default_n_workers() const {
  int n = n_cores();
  // A quota of 1.01 CPUs buys one CPU's worth of time: a second worker would only be throttled.
  if (cpu_limit_) n = std::min(n, static_cast<int>(std::floor(*cpu_limit_ + 1e-9)));
  return std::max(n, 1);
}

std::vector<WorkerPlacement> CpuTopology::place_workers(int n_workers, bool allow_oversubscribe) const {
  if (n_workers < 1) fail("thread pool: worker count must be >= 1, got {}", n_workers);
  if (n_workers > n_pus_ && !allow_oversubscribe)
    fail("thread pool: {} workers requested but only {} PUs are allowed ({})", n_workers, n_pus_, summary());
  const bool smt_needed = n_workers > n_cores();
  std::vector<int> weights;
  for (const auto& node : nodes_) {
    int w = 0;
    for (int c : node.cores) w += smt_needed ? static_cast<int>(cores_[static_cast<size_t>(c)].pus.size()) : 1;
    weights.push_back(w);
  }
  const int n_placeable = std::min(n_workers, n_pus_);
  const std::vector<int> share = proportional_split(n_placeable, weights);
  std::vector<WorkerPlacement> out;
  out.reserve(static_cast<size_t>(n_workers));
  for (size_t ni = 0; ni < nodes_.size(); ++ni) {
    int taken = 0;
    size_t max_round = 0;
    for (int c : nodes_[ni].cores) max_round = std::max(max_round, cores_[static_cast<size_t>(c)].pus.size());
    for (size_t round = 0; taken < share[ni] && round < max_round; ++round) {
      for (int c : nodes_[ni].cores) {
        const auto& core = cores_[static_cast<size_t>(c)];
        if (round >= core.pus.size() || taken >= share[ni]) continue;
        out.push_back(WorkerPlacement{core.pus[round], c, static_cast<int>(ni)});
        ++taken;
      }
    }
  }
  for (size_t i = 0; out.size() < static_cast<size_t>(n_workers); ++i) out.push_back(out[i]);  // oversubscribed
  return out;
}

std::string CpuTopology::summary() const {
  std::string limit = cpu_limit_ ? fmt::format("CPU limit {:.2f}", *cpu_limit_) : std::string("no CPU limit");
  return fmt::format("{} package{}, {} NUMA node{}, {} core{}, {} PU{} allowed; {}{}", n_packages_,
                     n_packages_ == 1 ? "" : "s", n_numa_nodes(), n_numa_nodes() == 1 ? "" : "s", n_cores(),
                     n_cores() == 1 ? "" : "s", n_pus_, n_pus_ == 1 ? "" : "s", limit,
                     this_system_ ? "" : " (synthetic)");
}

}  // namespace moetier::sched
