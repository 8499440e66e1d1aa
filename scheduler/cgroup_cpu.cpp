// cgroup CPU bandwidth limits (see cgroup_cpu.hpp). Format reference: Linux
// Documentation/admin-guide/cgroup-v2.rst ("cpu.max") and cgroup-v1/cfs-bandwidth ("cpu.cfs_quota_us").
#include "scheduler/cgroup_cpu.hpp"

#include "common/error.hpp"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace moetier::sched {
namespace {

std::optional<std::string> read_small_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

std::optional<int64_t> parse_int(std::string_view s) {
  s = trim(s);
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

void take_min(std::optional<double>& acc, std::optional<double> v) {
  if (v && (!acc || *v < *acc)) acc = v;
}

// Reads the v1 pair (quota, period) in `dir`; nullopt when unlimited or unreadable.
std::optional<double> v1_limit(const std::filesystem::path& dir) {
  auto q = read_small_file(dir / "cpu.cfs_quota_us");
  auto p = read_small_file(dir / "cpu.cfs_period_us");
  if (!q || !p) return std::nullopt;
  auto quota = parse_int(*q);
  auto period = parse_int(*p);
  if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<double> v2_limit(const std::filesystem::path& dir) {
  auto text = read_small_file(dir / "cpu.max");
  if (!text) return std::nullopt;
  try {
    return parse_cgroup_cpu_max(*text, (dir / "cpu.max").string());
  } catch (const Error&) {
    return std::nullopt;
  }
}

// Applies `leaf_limit` to `base/rel` and each ancestor up to `base` and returns the minimum. When
// `base/rel` does not exist (cgroup namespace: the listed path is relative to a root we cannot see),
// only `base` itself is read.
template <typename F>
std::optional<double> walk_up(const std::filesystem::path& base, std::string_view rel, F leaf_limit) {
  std::filesystem::path rel_path(std::string(trim(rel)));
  rel_path = rel_path.relative_path();  // drop the leading '/'
  std::optional<double> best;
  std::error_code ec;
  if (!rel_path.empty() && std::filesystem::is_directory(base / rel_path, ec)) {
    for (auto p = rel_path; !p.empty(); p = p.parent_path()) {
      take_min(best, leaf_limit(base / p));
      if (p == p.parent_path()) break;
    }
  }
  take_min(best, leaf_limit(base));
  return best;
}

}  // namespace

std::optional<double> parse_cgroup_cpu_max(std::string_view text, std::string_view source) {
  const std::string_view t = trim(text);
  const size_t sp = t.find(' ');
  const std::string_view quota = sp == std::string_view::npos ? t : t.substr(0, sp);
  const std::string_view period_s = sp == std::string_view::npos ? std::string_view("100000") : t.substr(sp + 1);
  const auto period = parse_int(period_s);
  if (!period || *period <= 0) fail("{}: expected '<quota|max> <period_us>', got '{}'", source, t);
  if (quota == "max") return std::nullopt;
  const auto q = parse_int(quota);
  if (!q || *q <= 0) fail("{}: expected '<quota|max> <period_us>', got '{}'", source, t);
  return static_cast<double>(*q) / static_cast<double>(*period);
}

std::optional<double> cgroup_cpu_limit(const CgroupPaths& paths) {
  const auto listing = read_small_file(paths.proc_self_cgroup);
  if (!listing) return std::nullopt;
  const std::filesystem::path root(paths.sysfs_root);
  std::optional<double> best;
  std::istringstream lines(*listing);
  std::string line;
  // Each line: "<hierarchy-id>:<controllers>:<path>"; v2 is "0::<path>".
  while (std::getline(lines, line)) {
    const size_t c1 = line.find(':');
    const size_t c2 = c1 == std::string::npos ? std::string::npos : line.find(':', c1 + 1);
    if (c2 == std::string::npos) continue;
    const std::string controllers = line.substr(c1 + 1, c2 - c1 - 1);
    const std::string_view rel = std::string_view(line).substr(c2 + 1);
    if (controllers.empty()) {
      take_min(best, walk_up(root, rel, v2_limit));
      continue;
    }
    // v1: the cpu controller, possibly co-mounted ("cpu,cpuacct").
    std::vector<std::string> names;
    std::stringstream cs(controllers);
    for (std::string n; std::getline(cs, n, ',');) names.push_back(n);
    if (std::find(names.begin(), names.end(), "cpu") == names.end()) continue;
    for (const std::string& mount : {controllers, std::string("cpu"), std::string("cpu,cpuacct")}) {
      std::error_code ec;
      if (!std::filesystem::is_directory(root / mount, ec)) continue;
      take_min(best, walk_up(root / mount, rel, v1_limit));
      break;
    }
  }
  return best;
}

}  // namespace moetier::sched
