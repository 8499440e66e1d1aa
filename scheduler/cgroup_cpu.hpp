// cgroup CPU bandwidth limits: how many CPUs' worth of time the container may use (cgroup v2 cpu.max,
// cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us). The topology caps its default worker count with it so
// that a container limited to 2 CPUs of a 64-core host starts 2 workers, not 64 throttled spinners.
// (The cgroup *cpuset* is a different mechanism: hwloc and sched_getaffinity already report it.)
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace moetier::sched {

/// Parses the content of a cgroup v2 `cpu.max` file ("max 100000" or "<quota_us> <period_us>").
/// Returns the limit in CPUs (quota / period, e.g. 1.5), or nullopt for "max" (unlimited).
/// Throws moetier::Error on malformed text (naming `source` and the text).
std::optional<double> parse_cgroup_cpu_max(std::string_view text, std::string_view source = "cpu.max");

/// Where to look for cgroup files; tests point these at a fake tree in a temp directory.
struct CgroupPaths {
  std::string proc_self_cgroup = "/proc/self/cgroup";  ///< lists the process's cgroup per hierarchy
  std::string sysfs_root = "/sys/fs/cgroup";           ///< mount point of the cgroup filesystem(s)
};

/// The CPU bandwidth limit of this process's cgroup, in CPUs (quota / period), or nullopt when none is
/// set or nothing can be read. Walks from the process's cgroup up to the root and returns the smallest
/// limit found (a parent's limit also applies). cgroup v2: `<root>/<path>/cpu.max`; v1:
/// `<root>/cpu[,cpuacct]/<path>/cpu.cfs_quota_us` (-1 = unlimited) and `cpu.cfs_period_us`. When the
/// path listed in /proc/self/cgroup does not exist (cgroup namespaces), the mount's root is read.
/// Never throws for missing files; malformed files are ignored (treated as unlimited).
std::optional<double> cgroup_cpu_limit(const CgroupPaths& paths = {});

}  // namespace moetier::sched
