// Tests of the CPU topology (synthetic multi-socket machines, allowed-cpuset override, cgroup limits).
#include <doctest/doctest.h>

#include "common/error.hpp"
#include "scheduler/cgroup_cpu.hpp"
#include "scheduler/topology.hpp"

#include <sched.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <utility>
#include <vector>

using namespace moetier;
using namespace moetier::sched;

namespace {

CpuTopology synthetic(const std::string& desc, std::optional<std::vector<int>> allowed = std::nullopt) {
  TopologyOptions o;
  o.synthetic = desc;
  o.allowed_pus = std::move(allowed);
  return CpuTopology::detect(o);
}

// A temp directory removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "moetier-cgroup-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void write(const std::filesystem::path& rel, const std::string& text) const {
    std::filesystem::create_directories((path / rel).parent_path());
    std::ofstream(path / rel) << text;
  }
};

}  // namespace

TEST_CASE("topology: synthetic 2-socket machine has per-package NUMA nodes, cores and SMT PUs") {
  const CpuTopology t = synthetic("pack:2 numa:1 core:8 pu:2");
  CHECK_FALSE(t.is_this_system());
  CHECK(t.n_packages() == 2);
  CHECK(t.n_numa_nodes() == 2);
  CHECK(t.n_cores() == 16);
  CHECK(t.n_pus() == 32);
  CHECK(t.default_n_workers() == 16);
  CHECK_FALSE(t.cpu_limit().has_value());
  for (int c = 0; c < t.n_cores(); ++c) {
    const auto& core = t.cores()[static_cast<size_t>(c)];
    REQUIRE(core.pus.size() == 2);
    CHECK(core.pus[0] == 2 * c);
    CHECK(core.pus[1] == 2 * c + 1);
    CHECK(core.package == c / 8);
    CHECK(core.numa_node == c / 8);
  }
  for (int n = 0; n < 2; ++n) {
    const auto& node = t.numa_nodes()[static_cast<size_t>(n)];
    REQUIRE(node.cores.size() == 8);
    for (int i = 0; i < 8; ++i) CHECK(node.cores[static_cast<size_t>(i)] == 8 * n + i);
  }
}

TEST_CASE("topology: default placement is one PU per core, grouped by NUMA node") {
  const CpuTopology t = synthetic("pack:2 numa:1 core:8 pu:2");
  const auto p = t.place_workers(t.default_n_workers());
  REQUIRE(p.size() == 16);
  std::set<int> cores;
  for (size_t w = 0; w < p.size(); ++w) {
    CHECK(p[w].numa_node == static_cast<int>(w / 8));
    CHECK(p[w].pu == t.cores()[static_cast<size_t>(p[w].core)].pus[0]);  // first PU of the core
    cores.insert(p[w].core);
  }
  CHECK(cores.size() == 16);  // every core once
}

TEST_CASE("topology: fewer workers than cores are spread over NUMA nodes; more use SMT siblings") {
  const CpuTopology t = synthetic("pack:2 numa:1 core:8 pu:2");
  const auto p3 = t.place_workers(3);
  REQUIRE(p3.size() == 3);
  CHECK(p3[0].numa_node == 0);
  CHECK(p3[1].numa_node == 0);
  CHECK(p3[2].numa_node == 1);
  const auto p32 = t.place_workers(32);
  std::set<int> pus;
  int on_node1 = 0;
  for (const auto& w : p32) {
    pus.insert(w.pu);
    on_node1 += w.numa_node == 1;
  }
  CHECK(pus.size() == 32);
  CHECK(on_node1 == 16);
  CHECK_THROWS_AS(t.place_workers(33), Error);
  CHECK_THROWS_AS(t.place_workers(0), Error);
  CHECK(t.place_workers(40, /*allow_oversubscribe=*/true).size() == 40);
}

TEST_CASE("topology: sub-NUMA clustering gives several nodes per package") {
  const CpuTopology t = synthetic("pack:2 numa:2 core:4 pu:1");
  CHECK(t.n_packages() == 2);
  CHECK(t.n_numa_nodes() == 4);
  CHECK(t.n_cores() == 16);
  CHECK(t.n_pus() == 16);
  for (int c = 0; c < 16; ++c) {
    CHECK(t.cores()[static_cast<size_t>(c)].package == c / 8);
    CHECK(t.cores()[static_cast<size_t>(c)].numa_node == c / 4);
  }
  const auto p = t.place_workers(8);  // 2 per node
  for (size_t w = 0; w < p.size(); ++w) CHECK(p[w].numa_node == static_cast<int>(w / 2));
}

TEST_CASE("topology: allowed cpuset override restricts cores, PUs and the default worker count") {
  // PUs 0-3 = cores 0,1 of package 0; PUs 16,17 = core 8 (first core of package 1); PU 5 = half a core.
  const CpuTopology t = synthetic("pack:2 numa:1 core:8 pu:2", std::vector<int>{0, 1, 2, 3, 5, 16, 17, 999});
  CHECK(t.n_pus() == 7);
  CHECK(t.n_cores() == 4);
  CHECK(t.n_packages() == 2);
  CHECK(t.n_numa_nodes() == 2);
  CHECK(t.default_n_workers() == 4);
  CHECK(t.cores()[2].pus == std::vector<int>{5});
  const auto p = t.place_workers(4);
  std::set<int> pus;
  for (const auto& w : p) pus.insert(w.pu);
  CHECK(pus == std::set<int>{0, 2, 5, 16});
  CHECK(t.numa_nodes()[1].cores == std::vector<int>{3});

  const CpuTopology one_node = synthetic("pack:2 numa:1 core:8 pu:2", std::vector<int>{20, 21});
  CHECK(one_node.n_numa_nodes() == 1);
  CHECK(one_node.n_packages() == 1);
  CHECK(one_node.default_n_workers() == 1);
  CHECK(one_node.place_workers(2)[1].pu == 21);

  CHECK_THROWS_AS(synthetic("pack:2 numa:1 core:8 pu:2", std::vector<int>{64, 65}), Error);
  CHECK_THROWS_AS(synthetic("pack:2 core:lots"), Error);
}

TEST_CASE("topology: a CPU limit caps the default worker count at floor(limit), at least 1") {
  TopologyOptions o;
  o.synthetic = "pack:1 numa:1 core:8 pu:1";
  // {quota in CPUs, workers}: a fraction of a CPU above a whole number buys no extra worker.
  const std::vector<std::pair<double, int>> cases = {
      {2.5, 2}, {1.01, 1}, {1.0, 1}, {0.2, 1}, {0.999, 1}, {2.0, 2}, {3.0 - 1e-12, 3}, {7.99, 7}, {64, 8}};
  for (const auto& [limit, workers] : cases) {
    CAPTURE(limit);
    o.cpu_limit = limit;
    CHECK(CpuTopology::detect(o).default_n_workers() == workers);
  }
  // A cgroup quota of 101000 / 100000 (1.01 CPUs), read from cpu.max, is one worker.
  o.cpu_limit = parse_cgroup_cpu_max("101000 100000");
  CHECK(CpuTopology::detect(o).default_n_workers() == 1);
  o.cpu_limit = 0;
  CHECK_THROWS_AS(CpuTopology::detect(o), Error);
}

TEST_CASE("topology: running machine matches the process affinity") {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(sched_getaffinity(0, sizeof(set), &set) == 0);
  const CpuTopology t = CpuTopology::detect();
  CHECK(t.is_this_system());
  CHECK(t.n_pus() == CPU_COUNT(&set));
  CHECK(t.n_cores() >= 1);
  CHECK(t.n_cores() <= t.n_pus());
  for (const auto& c : t.cores())
    for (int pu : c.pus) CHECK(CPU_ISSET(pu, &set));
  MESSAGE("this machine: " << t.summary());

  // Explicit override: only the first allowed PU.
  int first = 0;
  while (!CPU_ISSET(first, &set)) ++first;
  TopologyOptions o;
  o.allowed_pus = std::vector<int>{first};
  const CpuTopology one = CpuTopology::detect(o);
  CHECK(one.n_pus() == 1);
  CHECK(one.default_n_workers() == 1);
  CHECK(one.cores()[0].pus == std::vector<int>{first});
}

TEST_CASE("cgroup: cpu.max parsing") {
  CHECK_FALSE(parse_cgroup_cpu_max("max 100000\n").has_value());
  CHECK(parse_cgroup_cpu_max("150000 100000\n").value() == doctest::Approx(1.5));
  CHECK(parse_cgroup_cpu_max("200000 50000").value() == doctest::Approx(4.0));
  CHECK_THROWS_AS(parse_cgroup_cpu_max("lots 100000"), Error);
  CHECK_THROWS_AS(parse_cgroup_cpu_max("100000 0"), Error);
  CHECK_THROWS_AS(parse_cgroup_cpu_max(""), Error);
}

TEST_CASE("cgroup: v2 limit is the smallest along the path; v1 quota/period; missing = none") {
  TempDir dir;
  CgroupPaths paths{(dir.path / "proc_cgroup").string(), (dir.path / "sys").string()};
  CHECK_FALSE(cgroup_cpu_limit(paths).has_value());  // nothing to read

  dir.write("proc_cgroup", "0::/a/b\n");
  dir.write("sys/a/cpu.max", "200000 100000\n");
  dir.write("sys/a/b/cpu.max", "max 100000\n");
  CHECK(cgroup_cpu_limit(paths).value() == doctest::Approx(2.0));
  dir.write("sys/a/b/cpu.max", "50000 100000\n");
  CHECK(cgroup_cpu_limit(paths).value() == doctest::Approx(0.5));

  // v1 with a path invisible in this namespace: the controller's mount root is read.
  dir.write("proc_cgroup", "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n");
  dir.write("sys/cpu,cpuacct/cpu.cfs_quota_us", "300000\n");
  dir.write("sys/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  CHECK(cgroup_cpu_limit(paths).value() == doctest::Approx(3.0));
  dir.write("sys/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
  CHECK_FALSE(cgroup_cpu_limit(paths).has_value());

  // detect() on the running machine uses these paths.
  dir.write("proc_cgroup", "0::/\n");
  dir.write("sys/cpu.max", "100000 100000\n");
  TopologyOptions o;
  o.cgroup_paths = paths;
  const CpuTopology t = CpuTopology::detect(o);
  CHECK(t.cpu_limit().value() == doctest::Approx(1.0));
  CHECK(t.default_n_workers() == 1);
}
