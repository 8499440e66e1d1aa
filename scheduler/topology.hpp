// CPU topology (hwloc 2.x): which packages, NUMA nodes, cores and PUs (hardware threads) this process
// may run on, and where to place the worker threads of the pool (one per allowed physical core by
// default). Honours the process's CPU affinity (sched_getaffinity / taskset / cgroup cpuset: a
// container allowed 2 of 64 cores gets 2 workers pinned to those 2) and the cgroup CPU bandwidth limit
// (cpu.max: a container limited to 1.5 CPUs gets 2 workers). Tests build multi-socket machines from an
// hwloc synthetic description ("pack:2 numa:1 core:8 pu:2") and override the allowed cpuset.
//
// Deliberately NOT used: hwloc's cache sizes (L3) and NUMA memory sizes. Under this project's VMs they
// are wrong (the hypervisor reports made-up values), so anything sized by them (tiles, cache budgets)
// takes its numbers from configuration or measurement (scheduler/bandwidth.hpp), never from here.
#pragma once

#include "scheduler/cgroup_cpu.hpp"

#include <optional>
#include <string>
#include <vector>

namespace moetier::sched {

/// How to build a CpuTopology. Defaults describe the running machine as this process sees it.
struct TopologyOptions {
  /// hwloc synthetic description (hwloc_topology_set_synthetic syntax, e.g. "pack:2 numa:1 core:8 pu:2");
  /// empty = the running machine. PU OS indices of a synthetic machine are 0..n_pus-1 in order.
  std::string synthetic;
  /// Allowed PUs by OS index, replacing the process affinity (it is still intersected with the PUs the
  /// topology has). Empty optional = the process's affinity (running machine) or all PUs (synthetic).
  std::optional<std::vector<int>> allowed_pus;
  /// CPU bandwidth limit in CPUs, replacing the cgroup's. Unset = read the cgroup (running machine) or
  /// no limit (synthetic).
  std::optional<double> cpu_limit;
  /// Where the cgroup files are (tests point this at a fake tree).
  CgroupPaths cgroup_paths;
};

/// One allowed physical core.
struct CoreInfo {
  int package = 0;        ///< dense package index (0..n_packages-1)
  int numa_node = 0;      ///< dense NUMA node index (0..n_numa_nodes-1)
  std::vector<int> pus;   ///< its allowed PUs, OS indices, ascending (2 with SMT, 1 without)
};

/// One NUMA node that has at least one allowed core.
struct NumaNodeInfo {
  unsigned os_index = 0;  ///< the kernel's node number (for mbind / numa_* calls)
  std::vector<int> cores; ///< indices into CpuTopology::cores()
};

/// Where one worker thread runs.
struct WorkerPlacement {
  int pu = -1;         ///< OS index of the PU the worker is pinned to
  int core = -1;       ///< index into CpuTopology::cores()
  int numa_node = -1;  ///< dense NUMA node index
};

/// The allowed part of the CPU topology. A plain value (the hwloc handle is released after detection).
class CpuTopology {
 public:
  /// Discovers the topology with hwloc. Throws moetier::Error when hwloc fails to load (naming the
  /// synthetic description if any) or when no PU is allowed (e.g. an override naming absent PUs).
  static CpuTopology detect(const TopologyOptions& options = {});

  /// True for the running machine: its PUs can be pinned to. False for synthetic topologies.
  bool is_this_system() const { return this_system_; }
  int n_packages() const { return n_packages_; }
  int n_numa_nodes() const { return static_cast<int>(nodes_.size()); }
  int n_cores() const { return static_cast<int>(cores_.size()); }
  int n_pus() const { return n_pus_; }
  /// Allowed cores, ordered by hwloc logical index (package, then node, then core).
  const std::vector<CoreInfo>& cores() const { return cores_; }
  const std::vector<NumaNodeInfo>& numa_nodes() const { return nodes_; }
  /// CPU bandwidth limit in CPUs (cgroup quota / period or the override); nullopt = unlimited.
  std::optional<double> cpu_limit() const { return cpu_limit_; }

  /// Default worker count: one per allowed core, capped at floor(cpu_limit) (a quota of 1.01 CPUs is
  /// one worker), at least 1.
  int default_n_workers() const;

  /// Places `n_workers` workers: NUMA nodes get shares proportional to their allowed cores (largest
  /// remainder; ties to the lower node), each node takes the first PU of each of its cores, then the
  /// second PUs (SMT siblings) when more workers than cores are asked for. Workers are ordered node by
  /// node, so worker 0 (the pool's caller thread) is on node 0. Throws moetier::Error when n_workers < 1
  /// or n_workers > n_pus() unless `allow_oversubscribe` (then placements wrap around; for unpinned
  /// test pools only).
  std::vector<WorkerPlacement> place_workers(int n_workers, bool allow_oversubscribe = false) const;

  /// One line, e.g. "2 packages, 2 NUMA nodes, 16 cores, 32 PUs allowed; no CPU limit".
  std::string summary() const;

 private:
  bool this_system_ = false;
  int n_packages_ = 0;
  int n_pus_ = 0;
  std::vector<CoreInfo> cores_;
  std::vector<NumaNodeInfo> nodes_;
  std::optional<double> cpu_limit_;
};

}  // namespace moetier::sched
