// The machine profile's JSON form and look-ups (see machine_profile.hpp).
#include "runtime/tuning/machine_profile.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>

#include "common/error.hpp"
#include "common/file_io.hpp"

namespace moetier::tuning {
namespace {

using nlohmann::json;

json method_json(const Method& m) {
  return {{"method", m.method}, {"bytes", m.bytes}, {"threads", m.threads}, {"repetitions", m.repetitions}};
}

/// Reads the JSON of one profile, every error naming the file and the key path.
struct Reader {
  const std::string& source;

  [[noreturn]] void bad(const std::string& key, const std::string& what) const {
    fail("machine profile {}: key '{}': {}", source, key, what);
  }
  const json& at(const json& j, const std::string& path, const char* key) const {
    if (!j.is_object() || !j.contains(key)) bad(path + key, "missing");
    return j.at(key);
  }
  std::string str(const json& j, const std::string& path, const char* key) const {
    const json& v = at(j, path, key);
    if (!v.is_string()) bad(path + key, "expected a string");
    return v.get<std::string>();
  }
  double num(const json& j, const std::string& path, const char* key, bool positive) const {
    const json& v = at(j, path, key);
    if (!v.is_number()) bad(path + key, "expected a number");
    const double d = v.get<double>();
    if (!std::isfinite(d) || d < 0 || (positive && d <= 0))
      bad(path + key, positive ? "expected a finite number > 0" : "expected a finite number >= 0");
    return d;
  }
  int64_t integer(const json& j, const std::string& path, const char* key, bool positive) const {
    const json& v = at(j, path, key);
    if (!v.is_number_integer()) bad(path + key, "expected an integer");
    const int64_t i = v.get<int64_t>();
    if (i < 0 || (positive && i == 0)) bad(path + key, positive ? "expected an integer > 0" : "expected an integer >= 0");
    return i;
  }
  const json& array(const json& j, const std::string& path, const char* key) const {
    const json& v = at(j, path, key);
    if (!v.is_array()) bad(path + key, "expected an array");
    return v;
  }
  Method method(const json& j, const std::string& path) const {
    const json& m = at(j, path, "how");
    const std::string p = path + "how.";
    Method r;
    r.method = str(m, p, "method");
    if (r.method.empty()) bad(p + "method", "empty");
    r.bytes = static_cast<uint64_t>(integer(m, p, "bytes", false));
    r.threads = static_cast<int>(integer(m, p, "threads", true));
    r.repetitions = static_cast<int>(integer(m, p, "repetitions", true));
    return r;
  }
};

std::string item(const char* key, size_t i) { return std::string(key) + "[" + std::to_string(i) + "]."; }

}  // namespace

double MachineProfile::dram_gbps(int threads) const {
  if (dram.empty()) fail("machine profile: no DRAM bandwidth figure");
  const DramFigure* best = nullptr;
  for (const DramFigure& d : dram)
    if (d.threads <= threads && (!best || d.threads > best->threads)) best = &d;
  if (!best)
    for (const DramFigure& d : dram)
      if (!best || d.threads < best->threads) best = &d;
  return best->gbps;
}

std::optional<double> MachineProfile::disk_gbps(uint64_t read_bytes) const {
  if (disk.empty()) return std::nullopt;
  double best_dist = std::numeric_limits<double>::infinity();
  uint64_t size = 0;
  const double want = std::log(static_cast<double>(std::max<uint64_t>(read_bytes, 1)));
  for (const DiskFigure& d : disk) {
    const double dist = std::abs(std::log(static_cast<double>(std::max<uint64_t>(d.read_bytes, 1))) - want);
    if (dist < best_dist) best_dist = dist, size = d.read_bytes;
  }
  double gbps = 0;
  for (const DiskFigure& d : disk)
    if (d.read_bytes == size) gbps = std::max(gbps, d.gbps);
  return gbps;
}

const KernelFigure* MachineProfile::kernel(const std::string& type, int64_t tokens) const {
  const KernelFigure* best = nullptr;
  double best_dist = std::numeric_limits<double>::infinity();
  for (const KernelFigure& k : kernels) {
    if (k.type != type) continue;
    const double dist = std::abs(std::log(static_cast<double>(std::max<int64_t>(k.tokens, 1))) -
                                 std::log(static_cast<double>(std::max<int64_t>(tokens, 1))));
    if (dist < best_dist) best_dist = dist, best = &k;
  }
  return best;
}

const OverheadFigure* MachineProfile::overhead(const std::string& what) const {
  for (const OverheadFigure& o : overheads)
    if (o.what == what) return &o;
  return nullptr;
}

double MachineProfile::overhead_us(const std::string& what) const {
  for (const OverheadFigure& o : overheads)
    if (o.what == what) return o.microseconds;
  return 0;
}

std::string machine_profile_to_json(const MachineProfile& p) {
  json j;
  j["schema"] = kMachineSchema;
  j["created"] = p.created;
  j["cpu"] = p.cpu;
  j["max_threads"] = p.max_threads;
  j["dram"] = json::array();
  for (const DramFigure& d : p.dram) j["dram"].push_back({{"threads", d.threads}, {"gbps", d.gbps}, {"how", method_json(d.how)}});
  j["disk"] = {{"dir", p.disk_dir}, {"backend", p.disk_backend}, {"reads", json::array()}};
  for (const DiskFigure& d : p.disk)
    j["disk"]["reads"].push_back(
        {{"read_bytes", d.read_bytes}, {"queue_depth", d.queue_depth}, {"gbps", d.gbps}, {"how", method_json(d.how)}});
  j["kernels"] = json::array();
  for (const KernelFigure& k : p.kernels)
    j["kernels"].push_back({{"type", k.type}, {"tokens", k.tokens}, {"gbps", k.gbps}, {"gflops", k.gflops},
                            {"how", method_json(k.how)}});
  j["overheads"] = json::array();
  for (const OverheadFigure& o : p.overheads) {
    json f = {{"what", o.what}, {"microseconds", o.microseconds}, {"how", method_json(o.how)}};
    if (o.context > 0) f["context"] = o.context;
    if (o.elements > 0) f["elements"] = o.elements;
    j["overheads"].push_back(std::move(f));
  }
  j["gpu"] = p.gpu;
  return j.dump(2) + "\n";
}

MachineProfile machine_profile_from_json(const std::string& text, const std::string& source) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) fail("machine profile {}: not valid JSON", source);
  const Reader r{source};
  const std::string schema = r.str(j, "", "schema");
  if (schema != kMachineSchema) r.bad("schema", fmt::format("'{}' (expected '{}')", schema, kMachineSchema));
  MachineProfile p;
  p.created = r.str(j, "", "created");
  p.cpu = r.str(j, "", "cpu");
  p.max_threads = static_cast<int>(r.integer(j, "", "max_threads", true));
  p.gpu = r.str(j, "", "gpu");
  const json& dram = r.array(j, "", "dram");
  if (dram.empty()) r.bad("dram", "expected at least one figure");
  for (size_t i = 0; i < dram.size(); ++i) {
    const std::string at = item("dram", i);
    p.dram.push_back({static_cast<int>(r.integer(dram[i], at, "threads", true)), r.num(dram[i], at, "gbps", true),
                      r.method(dram[i], at)});
  }
  const json& disk = r.at(j, "", "disk");
  p.disk_dir = r.str(disk, "disk.", "dir");
  p.disk_backend = r.str(disk, "disk.", "backend");
  const json& reads = r.array(disk, "disk.", "reads");
  for (size_t i = 0; i < reads.size(); ++i) {
    const std::string at = "disk." + item("reads", i);
    p.disk.push_back({static_cast<uint64_t>(r.integer(reads[i], at, "read_bytes", true)),
                      static_cast<int>(r.integer(reads[i], at, "queue_depth", true)), r.num(reads[i], at, "gbps", true),
                      r.method(reads[i], at)});
  }
  const json& kernels = r.array(j, "", "kernels");
  for (size_t i = 0; i < kernels.size(); ++i) {
    const std::string at = item("kernels", i);
    KernelFigure k;
    k.type = r.str(kernels[i], at, "type");
    k.tokens = r.integer(kernels[i], at, "tokens", true);
    k.gbps = r.num(kernels[i], at, "gbps", true);
    k.gflops = r.num(kernels[i], at, "gflops", true);
    k.how = r.method(kernels[i], at);
    p.kernels.push_back(std::move(k));
  }
  const json& overheads = r.array(j, "", "overheads");
  for (size_t i = 0; i < overheads.size(); ++i) {
    const std::string at = item("overheads", i);
    OverheadFigure o{r.str(overheads[i], at, "what"), r.num(overheads[i], at, "microseconds", false),
                     r.method(overheads[i], at)};
    // Optional (profiles written before the per-token figures lack them).
    if (overheads[i].contains("context")) o.context = r.integer(overheads[i], at, "context", true);
    if (overheads[i].contains("elements")) o.elements = r.num(overheads[i], at, "elements", true);
    p.overheads.push_back(std::move(o));
  }
  return p;
}

MachineProfile read_machine_profile(const std::string& path) {
  return machine_profile_from_json(read_input_file(path, "machine profile"), path);
}

void write_machine_profile(const std::string& path, const MachineProfile& p) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) fail("machine profile {}: cannot create folder {}: {}", path, parent.string(), ec.message());
  write_output_file(path, machine_profile_to_json(p), "machine profile");
}

std::string default_machine_profile_path() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/moetier/machine.json";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/moetier/machine.json";
  return "";
}

}  // namespace moetier::tuning
