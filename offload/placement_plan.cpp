// offload/placement_plan.cpp — plan JSON reader/writer and validation (see placement_plan.hpp; the
// builders are in plan_builders.cpp).
#include "offload/placement_plan.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/file_io.hpp"
#include "offload/slot_layout.hpp"

namespace moetier::offload {
namespace {

using nlohmann::json;

/// `v` as compact JSON text; invalid UTF-8 (file names and strings are bytes) becomes U+FFFD instead of
/// a json type_error.
std::string json_text(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

constexpr uint64_t kRangesPerExpert = 3;  // gate, up, down: alignment slack of a cache slot

uint64_t slot_bytes_for(uint64_t expert_bytes) { return slot_bytes_bound(expert_bytes, kRangesPerExpert); }

// ---- reading helpers: every failure names source and JSON pointer ----

struct Reader {
  const std::string& source;

  [[noreturn]] void bad(const std::string& path, const std::string& what) const {
    fail("{}: {}: {}", source, path.empty() ? "/" : path, what);
  }
  const json& member(const json& obj, const std::string& path, const char* key) const {
    const auto it = obj.find(key);
    if (it == obj.end()) bad(path + "/" + key, "missing");
    return *it;
  }
  void only_keys(const json& obj, const std::string& path, std::initializer_list<const char*> keys) const {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      if (std::none_of(keys.begin(), keys.end(), [&](const char* k) { return it.key() == k; }))
        bad(path + "/" + it.key(), "unknown key");
    }
  }
  const json& object(const json& obj, const std::string& path, const char* key) const {
    const json& j = member(obj, path, key);
    if (!j.is_object()) bad(path + "/" + key, fmt::format("expected an object, got {}", j.type_name()));
    return j;
  }
  std::string string(const json& obj, const std::string& path, const char* key) const {
    const json& j = member(obj, path, key);
    if (!j.is_string()) bad(path + "/" + key, fmt::format("expected a string, got {}", json_text(j)));
    return j.get<std::string>();
  }
  uint64_t uint(const json& j, const std::string& path) const {
    if (!j.is_number_unsigned()) bad(path, fmt::format("expected a non-negative integer, got {}", json_text(j)));
    return j.get<uint64_t>();
  }
  uint64_t uint(const json& obj, const std::string& path, const char* key) const {
    return uint(member(obj, path, key), path + "/" + key);
  }
  Tier tier(const json& j, const std::string& path) const {
    Tier t;
    if (!j.is_string() || !parse_tier(j.get<std::string>(), t))
      bad(path, fmt::format("bad tier {} (expected \"gpu:N\", \"sim:N\", \"dram\" or \"nvme\")", json_text(j)));
    return t;
  }
  double gbps(const json& j, const std::string& path) const {
    if (!j.is_number() || !std::isfinite(j.get<double>()) || j.get<double>() < 0 || j.get<double>() > 1e6)
      bad(path, fmt::format("expected a rate in GB/s from 0 (unpaced) to 1e6, got {}", json_text(j)));
    return j.get<double>();
  }
};

void check_home(const Reader& r, Tier t, const char* path, const char* what) {
  if (t.kind == Tier::Kind::Nvme)
    r.bad(path, fmt::format("\"nvme\" is not a home for {} (expected \"dram\", \"gpu:N\" or \"sim:N\")", what));
  if (t.is_device() && t.device < 0) r.bad(path, "negative device index");
}

void check_devices(const Reader& r, const PlacementPlan& p) {
  for (size_t i = 0; i < p.devices.size(); ++i) {
    const DeviceBudget& d = p.devices[i];
    const std::string at = fmt::format("/devices/{}", i);
    if (!d.tier.is_device())
      r.bad(at + "/tier", fmt::format("\"{}\" is not a device (expected \"gpu:N\" or \"sim:N\")", to_string(d.tier)));
    if (d.tier.device < 0) r.bad(at + "/tier", "negative device index");
    for (size_t k = 0; k < i; ++k)
      if (p.devices[k].tier == d.tier)
        r.bad(at + "/tier", fmt::format("{} is listed twice (also /devices/{})", to_string(d.tier), k));
    if (d.bytes == 0) r.bad(at + "/bytes", "must be > 0");
    if (d.h2d_gbps && d.tier.kind != Tier::Kind::Sim)
      r.bad(at + "/h2d_gbps", fmt::format("only a simulated device (sim:N) has a configurable copy rate, not {}",
                                          to_string(d.tier)));
    if (d.h2d_gbps && !(std::isfinite(*d.h2d_gbps) && (*d.h2d_gbps == 0 || *d.h2d_gbps >= kMinSimH2dGbps) &&
                        *d.h2d_gbps <= 1e6))
      r.bad(at + "/h2d_gbps", fmt::format("expected a rate in GB/s: 0 (unpaced) or {} to 1e6, got {}", kMinSimH2dGbps,
                                          *d.h2d_gbps));
    const uint64_t experts = p.bytes_on(d.tier);
    if (experts > d.bytes)
      r.bad(at + "/bytes", fmt::format("{} bytes for {} cannot hold the {} bytes of experts placed on it", d.bytes,
                                       to_string(d.tier), experts));
  }
}

// Structural checks shared by parse and PlacementPlan::validate().
void check_plan(const PlacementPlan& p, const std::string& source) {
  const Reader r{source};
  const ModelIdentity& m = p.model;
  if (m.file.empty()) r.bad("/model/file", "empty file name");
  if (m.n_layers <= 0) r.bad("/model/n_layers", fmt::format("must be > 0, got {}", m.n_layers));
  if (m.n_experts <= 0) r.bad("/model/n_experts", fmt::format("must be > 0, got {}", m.n_experts));
  if (m.expert_bytes.size() != static_cast<size_t>(m.n_layers))
    r.bad("/model/expert_bytes", fmt::format("has {} entries, expected n_layers = {}", m.expert_bytes.size(), m.n_layers));
  check_home(r, p.non_expert, "/non_expert", "non-expert weights");
  check_home(r, p.kv_cache, "/kv_cache", "the KV cache");
  if (p.experts.size() != static_cast<size_t>(m.n_layers))
    r.bad("/experts", fmt::format("has {} layers, expected n_layers = {}", p.experts.size(), m.n_layers));
  uint64_t max_streamed = 0;
  for (size_t l = 0; l < p.experts.size(); ++l) {
    const size_t want = m.expert_bytes[l] == 0 ? 0 : static_cast<size_t>(m.n_experts);
    if (p.experts[l].size() != want)
      r.bad(fmt::format("/experts/{}", l),
            fmt::format("has {} experts, expected {}{}", p.experts[l].size(), want,
                        want == 0 ? " (expert_bytes is 0: layer without routed experts)" : " (n_experts)"));
    for (size_t e = 0; e < p.experts[l].size(); ++e) {
      const Tier t = p.experts[l][e];
      if (t.is_device() && t.device < 0) r.bad(fmt::format("/experts/{}/{}", l, e), "negative device index");
      if (t.kind == Tier::Kind::Nvme) max_streamed = std::max(max_streamed, m.expert_bytes[l]);
    }
  }
  if (max_streamed > 0 && p.cache_bytes < slot_bytes_for(max_streamed))
    r.bad("/cache/bytes", fmt::format("{} bytes cannot hold one streamed expert ({} bytes with alignment slack)",
                                      p.cache_bytes, slot_bytes_for(max_streamed)));
  check_devices(r, p);
}

}  // namespace

std::string to_string(Tier t) {
  switch (t.kind) {
    case Tier::Kind::Gpu: return fmt::format("gpu:{}", t.device);
    case Tier::Kind::Sim: return fmt::format("sim:{}", t.device);
    case Tier::Kind::Dram: return "dram";
    case Tier::Kind::Nvme: return "nvme";
  }
  return "?";
}

bool parse_tier(std::string_view s, Tier& out) {
  if (s == "dram") {
    out = Tier::dram();
    return true;
  }
  if (s == "nvme") {
    out = Tier::nvme();
    return true;
  }
  const bool gpu = s.substr(0, 4) == "gpu:", sim = s.substr(0, 4) == "sim:";
  if (s.size() > 4 && (gpu || sim)) {
    const std::string_view num = s.substr(4);
    int32_t n = -1;
    const auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
    // One spelling per tier: no sign, no leading zeros ("sim:00" is not sim:0).
    if (ec != std::errc() || ptr != num.data() + num.size() || n < 0 || num[0] == '+' || (num.size() > 1 && num[0] == '0'))
      return false;
    out = gpu ? Tier::gpu(n) : Tier::sim(n);
    return true;
  }
  return false;
}

Tier PlacementPlan::tier(ExpertId id) const {
  if (id.layer < 0 || static_cast<size_t>(id.layer) >= experts.size() || id.expert < 0 ||
      static_cast<size_t>(id.expert) >= experts[static_cast<size_t>(id.layer)].size())
    fail("placement plan for {}: no {} (plan has {} layers)", model.file, to_string(id), experts.size());
  return experts[static_cast<size_t>(id.layer)][static_cast<size_t>(id.expert)];
}

std::vector<ExpertId> PlacementPlan::experts_on(Tier::Kind kind) const {
  std::vector<ExpertId> out;
  for (size_t l = 0; l < experts.size(); ++l)
    for (size_t e = 0; e < experts[l].size(); ++e)
      if (experts[l][e].kind == kind) out.push_back(ExpertId{static_cast<int32_t>(l), static_cast<int32_t>(e)});
  return out;
}

uint64_t PlacementPlan::bytes_on(Tier::Kind kind) const {
  uint64_t n = 0;
  for (size_t l = 0; l < experts.size() && l < model.expert_bytes.size(); ++l)
    for (const Tier& t : experts[l])
      if (t.kind == kind) n += model.expert_bytes[l];
  return n;
}

void PlacementPlan::validate() const { check_plan(*this, "placement plan for " + model.file); }

std::vector<ExpertId> PlacementPlan::experts_on(Tier t) const {
  std::vector<ExpertId> out;
  for (size_t l = 0; l < experts.size(); ++l)
    for (size_t e = 0; e < experts[l].size(); ++e)
      if (experts[l][e] == t) out.push_back(ExpertId{static_cast<int32_t>(l), static_cast<int32_t>(e)});
  return out;
}

uint64_t PlacementPlan::bytes_on(Tier t) const {
  uint64_t n = 0;
  for (size_t l = 0; l < experts.size() && l < model.expert_bytes.size(); ++l)
    for (const Tier& x : experts[l])
      if (x == t) n += model.expert_bytes[l];
  return n;
}

const DeviceBudget* PlacementPlan::device_budget(Tier t) const {
  for (const DeviceBudget& d : devices)
    if (d.tier == t) return &d;
  return nullptr;
}

std::vector<Tier> PlacementPlan::used_devices() const {
  std::vector<Tier> out;
  const auto add = [&](Tier t) {
    if (t.is_device() && std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
  };
  add(non_expert);
  add(kv_cache);
  for (const auto& l : experts)
    for (Tier t : l) add(t);
  std::sort(out.begin(), out.end(), [](Tier a, Tier b) {
    const int ka = a.kind == Tier::Kind::Gpu ? 0 : 1, kb = b.kind == Tier::Kind::Gpu ? 0 : 1;
    return ka != kb ? ka < kb : a.device < b.device;
  });
  return out;
}

void PlacementPlan::validate_for_backends(const DeviceTiers& have) const {
  std::vector<Tier> missing;
  for (Tier t : used_devices())
    if (!have.has(t)) missing.push_back(t);
  if (missing.empty()) return;
  const auto is_missing = [&](Tier t) { return std::find(missing.begin(), missing.end(), t) != missing.end(); };
  std::vector<std::string> what;
  for (const auto& [kind, name] : {std::pair{Tier::Kind::Gpu, "a GPU"}, std::pair{Tier::Kind::Sim, "a simulated device"}}) {
    size_t n = 0;
    ExpertId first{};
    for (size_t l = 0; l < experts.size(); ++l)
      for (size_t e = 0; e < experts[l].size(); ++e)
        if (experts[l][e].kind == kind && is_missing(experts[l][e]) && n++ == 0)
          first = ExpertId{static_cast<int32_t>(l), static_cast<int32_t>(e)};
    if (n > 0)
      what.push_back(fmt::format("{} expert{} on {} (first: {} on {})", n, n == 1 ? "" : "s", name, to_string(first),
                                 to_string(tier(first))));
  }
  if (is_missing(non_expert)) what.push_back("the non-expert weights on " + to_string(non_expert));
  if (is_missing(kv_cache)) what.push_back("the KV cache on " + to_string(kv_cache));
  std::string needs, tiers;
  for (size_t i = 0; i < what.size(); ++i) needs += (i == 0 ? "" : i + 1 == what.size() ? " and " : ", ") + what[i];
  for (size_t i = 0; i < missing.size(); ++i) tiers += (i == 0 ? "" : ", ") + to_string(missing[i]);
  const auto range = [](int32_t n, const char* kind) {
    return n == 1 ? fmt::format("{}:0", kind) : fmt::format("{}:0..{}:{}", kind, kind, n - 1);
  };
  const std::string gpus = have.n_gpu == 0                      ? "no GPU backend (built without CUDA or no device found)"
                           : have.n_gpu == DeviceTiers::kAnyGpu ? "a GPU backend"
                                                                : fmt::format("{} CUDA device{} ({})", have.n_gpu,
                                                                              have.n_gpu == 1 ? "" : "s", range(have.n_gpu, "gpu"));
  const std::string sims = have.n_sim == 0 ? "no simulated device (--sim-device turns on sim:0)"
                                           : fmt::format("the simulated device{} {}", have.n_sim == 1 ? "" : "s",
                                                         range(have.n_sim, "sim"));
  fail("placement plan for {} puts {}, but this moetier has {} and {}: {} missing; make a plan for the devices it has",
       model.file, needs, gpus, sims, tiers);
}

void PlacementPlan::validate_for_backends(bool has_gpu) const {
  validate_for_backends(DeviceTiers{has_gpu ? DeviceTiers::kAnyGpu : 0, 0});
}

void PlacementPlan::check_device_budgets(uint64_t non_expert_bytes, uint64_t kv_cache_bytes) const {
  for (Tier t : used_devices()) {
    const DeviceBudget* d = device_budget(t);
    if (d == nullptr) continue;
    const uint64_t experts_b = bytes_on(t);
    const uint64_t ne = non_expert == t ? non_expert_bytes : 0, kv = kv_cache == t ? kv_cache_bytes : 0;
    // Sums in long double: sizes near 2^64 must not wrap into "fits".
    if (static_cast<long double>(experts_b) + ne + kv > static_cast<long double>(d->bytes))
      fail("placement plan for {}: {} needs {} bytes of experts + {} bytes of non-expert weights + {} bytes of KV cache, "
           "more than its budget of {} bytes (/devices); make the plan again for this context and model",
           model.file, to_string(t), experts_b, ne, kv, d->bytes);
  }
}

void PlacementPlan::check_model(const ModelIdentity& actual) const {
  const ModelIdentity& m = model;
  if (m.n_layers != actual.n_layers || m.n_experts != actual.n_experts || m.expert_bytes != actual.expert_bytes)
    fail("placement plan was made for {} ({} layers x {} experts), not for {} ({} layers x {} experts, or expert "
         "sizes differ)",
         m.file, m.n_layers, m.n_experts, actual.file, actual.n_layers, actual.n_experts);
}

std::string plan_to_json(const PlacementPlan& plan) {
  plan.validate();
  json j = json::object();
  j["schema"] = std::string(kPlacementSchema);
  j["model"] = {{"file", plan.model.file},
                {"n_layers", plan.model.n_layers},
                {"n_experts", plan.model.n_experts},
                {"expert_bytes", plan.model.expert_bytes}};
  j["non_expert"] = to_string(plan.non_expert);
  if (plan.kv_cache != Tier::dram()) j["kv_cache"] = to_string(plan.kv_cache);
  j["cache"] = {{"bytes", plan.cache_bytes}, {"policy", std::string(policy_name(plan.cache_policy))}};
  if (!plan.devices.empty()) {
    json devs = json::array();
    for (const DeviceBudget& d : plan.devices) {
      json e = {{"tier", to_string(d.tier)}, {"bytes", d.bytes}};
      if (d.h2d_gbps) e["h2d_gbps"] = *d.h2d_gbps;
      devs.push_back(std::move(e));
    }
    j["devices"] = std::move(devs);
  }
  json layers = json::array();
  for (const std::vector<Tier>& l : plan.experts) {
    json row = json::array();
    for (const Tier& t : l) row.push_back(to_string(t));
    layers.push_back(std::move(row));
  }
  j["experts"] = std::move(layers);
  // One layer per line: readable, and diffs of two plans show which layers changed.
  std::string out = "{\n";
  for (const char* k : {"schema", "model", "non_expert", "kv_cache", "cache", "devices"})
    if (j.contains(k)) out += fmt::format("  \"{}\": {},\n", k, json_text(j[k]));
  out += "  \"experts\": [\n";
  for (size_t l = 0; l < j["experts"].size(); ++l)
    out += fmt::format("    {}{}\n", json_text(j["experts"][l]), l + 1 < j["experts"].size() ? "," : "");
  out += "  ]\n}\n";
  return out;
}

PlacementPlan parse_placement_plan(std::string_view json_text, const std::string& source) {
  const Reader r{source};
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", source, e.what());
  }
  if (!j.is_object()) r.bad("", "expected a JSON object");
  r.only_keys(j, "", {"schema", "model", "non_expert", "kv_cache", "cache", "devices", "experts"});
  const std::string schema = r.string(j, "", "schema");
  if (schema != kPlacementSchema) {
    if (schema.rfind("moetier.placement/", 0) == 0)
      r.bad("/schema", fmt::format("unsupported version \"{}\" (this build reads \"{}\")", schema, kPlacementSchema));
    r.bad("/schema", fmt::format("\"{}\" is not a placement plan (expected \"{}\")", schema, kPlacementSchema));
  }
  PlacementPlan p;
  const json& m = r.object(j, "", "model");
  r.only_keys(m, "/model", {"file", "n_layers", "n_experts", "expert_bytes"});
  p.model.file = r.string(m, "/model", "file");
  const uint64_t n_layers = r.uint(m, "/model", "n_layers");
  const uint64_t n_experts = r.uint(m, "/model", "n_experts");
  if (n_layers == 0 || n_layers > 100000) r.bad("/model/n_layers", fmt::format("out of range: {}", n_layers));
  if (n_experts == 0 || n_experts > 1000000) r.bad("/model/n_experts", fmt::format("out of range: {}", n_experts));
  p.model.n_layers = static_cast<int32_t>(n_layers);
  p.model.n_experts = static_cast<int32_t>(n_experts);
  const json& eb = r.member(m, "/model", "expert_bytes");
  if (!eb.is_array()) r.bad("/model/expert_bytes", "expected an array");
  for (size_t i = 0; i < eb.size(); ++i) p.model.expert_bytes.push_back(r.uint(eb[i], fmt::format("/model/expert_bytes/{}", i)));

  p.non_expert = r.tier(r.member(j, "", "non_expert"), "/non_expert");
  if (j.contains("kv_cache")) p.kv_cache = r.tier(j["kv_cache"], "/kv_cache");
  const json& c = r.object(j, "", "cache");
  r.only_keys(c, "/cache", {"bytes", "policy"});
  p.cache_bytes = r.uint(c, "/cache", "bytes");
  const std::string policy = r.string(c, "/cache", "policy");
  try {
    p.cache_policy = parse_policy(policy);
  } catch (const Error& e) {
    r.bad("/cache/policy", e.what());
  }
  if (j.contains("devices")) {
    const json& ds = j["devices"];
    if (!ds.is_array()) r.bad("/devices", "expected an array of {\"tier\", \"bytes\"} objects");
    for (size_t i = 0; i < ds.size(); ++i) {
      const std::string at = fmt::format("/devices/{}", i);
      if (!ds[i].is_object()) r.bad(at, fmt::format("expected an object, got {}", ds[i].type_name()));
      r.only_keys(ds[i], at, {"tier", "bytes", "h2d_gbps"});
      DeviceBudget d;
      d.tier = r.tier(r.member(ds[i], at, "tier"), at + "/tier");
      d.bytes = r.uint(ds[i], at, "bytes");
      if (ds[i].contains("h2d_gbps")) d.h2d_gbps = r.gbps(ds[i]["h2d_gbps"], at + "/h2d_gbps");
      p.devices.push_back(d);
    }
  }
  const json& ex = r.member(j, "", "experts");
  if (!ex.is_array()) r.bad("/experts", "expected an array of layers");
  for (size_t l = 0; l < ex.size(); ++l) {
    const std::string lp = fmt::format("/experts/{}", l);
    if (!ex[l].is_array()) r.bad(lp, "expected an array of tiers");
    std::vector<Tier> row;
    for (size_t e = 0; e < ex[l].size(); ++e) row.push_back(r.tier(ex[l][e], fmt::format("{}/{}", lp, e)));
    p.experts.push_back(std::move(row));
  }
  check_plan(p, source);
  return p;
}

PlacementPlan read_placement_plan(const std::string& path) {
  return parse_placement_plan(read_input_file(path, "placement plan"), path);
}

void write_placement_plan(const std::string& path, const PlacementPlan& plan) {
  write_output_file(path, plan_to_json(plan), "placement plan");
}

uint64_t planned_slot_bytes(const ModelIdentity& model) {
  uint64_t max_bytes = 0;
  for (uint64_t b : model.expert_bytes) max_bytes = std::max(max_bytes, b);
  return slot_bytes_for(max_bytes);
}

}  // namespace moetier::offload
