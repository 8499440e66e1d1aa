// offload/routing_trace.cpp — trace readers and writer (see routing_trace.hpp).
#include "offload/routing_trace.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/file_io.hpp"

namespace moetier::offload {
namespace {

using nlohmann::json;

/// `v` as compact JSON text; invalid UTF-8 (file names and strings are bytes) becomes U+FFFD instead of
/// a json type_error.
std::string json_text(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

struct Keys {
  const char* seq;  // nullptr: absent, seq = 0
  const char* layer;
  const char* pos;
  const char* experts;
  const char* weights;
};
constexpr Keys kOurKeys{"seq", "layer", "pos", "experts", "weights"};
constexpr Keys kMixtralKeys{"problem_id", "layer", "token_idx", "experts", "gating_probs"};

int32_t get_index(const json& j, const char* key, bool required, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) {
    if (required) fail("{}: missing field \"{}\"", where, key);
    return 0;
  }
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > INT32_MAX)
    fail("{}: field \"{}\" must be a non-negative integer, got {}", where, key, json_text(*it));
  return static_cast<int32_t>(it->get<int64_t>());
}

RoutingRecord parse_record(const json& j, const Keys& k, const std::string& where) {
  if (!j.is_object()) fail("{}: expected a JSON object", where);
  RoutingRecord r;
  r.seq = k.seq != nullptr ? get_index(j, k.seq, false, where) : 0;
  r.layer = get_index(j, k.layer, true, where);
  r.pos = get_index(j, k.pos, true, where);
  const auto ex = j.find(k.experts);
  if (ex == j.end() || !ex->is_array()) fail("{}: field \"{}\" must be an array", where, k.experts);
  const auto wt = j.find(k.weights);
  if (wt == j.end() || !wt->is_array()) fail("{}: field \"{}\" must be an array", where, k.weights);
  if (ex->size() != wt->size())
    fail("{}: \"{}\" has {} entries but \"{}\" has {}", where, k.experts, ex->size(), k.weights, wt->size());
  for (const json& e : *ex) {
    if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() > INT32_MAX)
      fail("{}: expert ids must be non-negative integers, got {}", where, json_text(e));
    r.experts.push_back(static_cast<int32_t>(e.get<int64_t>()));
  }
  for (const json& w : *wt) {
    if (!w.is_number()) fail("{}: weights must be numbers, got {}", where, json_text(w));
    r.weights.push_back(w.get<float>());
  }
  return r;
}

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

RoutingTrace read_with(const std::string& path, const Keys& keys) {
  check_input_file(path, "routing trace");  // a FIFO or folder is refused instead of blocking or reading nothing
  std::ifstream in(path);
  if (!in) fail("{}: cannot open trace: {}", path, std::strerror(errno));
  RoutingTrace t;
  std::string line;
  for (size_t line_no = 1; std::getline(in, line); ++line_no) {
    if (is_blank(line)) continue;
    const std::string where = fmt::format("{}:{}", path, line_no);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      fail("{}: invalid JSON: {}", where, e.what());
    }
    t.records.push_back(parse_record(j, keys, where));
  }
  if (in.bad()) fail("{}: read error", path);
  return t;
}

}  // namespace

int32_t RoutingTrace::n_layers() const {
  int32_t n = 0;
  for (const RoutingRecord& r : records) n = std::max(n, r.layer + 1);
  return n;
}

int32_t RoutingTrace::n_experts() const {
  int32_t n = 0;
  for (const RoutingRecord& r : records)
    for (int32_t e : r.experts) n = std::max(n, e + 1);
  return n;
}

std::vector<ExpertRequest> RoutingTrace::decode_order() const {
  std::vector<size_t> order(records.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const RoutingRecord& x = records[a];
    const RoutingRecord& y = records[b];
    return std::tie(x.seq, x.pos, x.layer) < std::tie(y.seq, y.pos, y.layer);
  });
  std::vector<ExpertRequest> out;
  uint32_t group = 0;
  for (size_t i : order) {
    for (int32_t e : records[i].experts) out.push_back(ExpertRequest{ExpertId{records[i].layer, e}, group});
    ++group;
  }
  return out;
}

std::vector<std::vector<uint64_t>> RoutingTrace::usage_counts(int32_t n_layers, int32_t n_experts) const {
  std::vector<std::vector<uint64_t>> c(static_cast<size_t>(std::max(n_layers, 0)),
                                       std::vector<uint64_t>(static_cast<size_t>(std::max(n_experts, 0)), 0));
  for (const RoutingRecord& r : records) {
    for (int32_t e : r.experts) {
      if (r.layer >= n_layers || e >= n_experts)
        fail("routing trace: layer {} expert {} outside the model's {} layers x {} experts", r.layer, e, n_layers,
             n_experts);
      ++c[static_cast<size_t>(r.layer)][static_cast<size_t>(e)];
    }
  }
  return c;
}

RoutingTrace read_routing_trace(const std::string& path) { return read_with(path, kOurKeys); }

RoutingTrace read_mixtral_trace(const std::string& path) { return read_with(path, kMixtralKeys); }

RoutingTrace read_any_trace(const std::string& path) {
  check_input_file(path, "routing trace");
  std::ifstream in(path);
  if (!in) fail("{}: cannot open trace: {}", path, std::strerror(errno));
  std::string line;
  while (std::getline(in, line) && is_blank(line)) {
  }
  const bool mixtral = line.find("\"gating_probs\"") != std::string::npos;
  return mixtral ? read_mixtral_trace(path) : read_routing_trace(path);
}

void write_routing_trace(const std::string& path, const RoutingTrace& trace) {
  RoutingTraceWriter w(path);
  for (const RoutingRecord& r : trace.records) w.write(r);
  w.close();
}

RoutingTraceWriter::RoutingTraceWriter(const std::string& path)
    : path_(path), file_(std::make_unique<OutputFile>(path, "routing trace")) {}

void RoutingTraceWriter::write(const RoutingRecord& r) {
  if (r.experts.size() != r.weights.size())
    fail("{}: record (layer {}, pos {}): {} experts but {} weights", path_, r.layer, r.pos, r.experts.size(),
         r.weights.size());
  json j = json::object();
  if (r.seq != 0) j["seq"] = r.seq;
  j["layer"] = r.layer;
  j["pos"] = r.pos;
  j["experts"] = r.experts;
  j["weights"] = r.weights;
  const std::string s = json_text(j) + "\n";
  if (!file_) fail("{}: write after close", path_);
  file_->write(s);
}

void RoutingTraceWriter::close() {
  if (!file_) return;
  const std::unique_ptr<OutputFile> f = std::move(file_);
  f->commit();
}

}  // namespace moetier::offload
