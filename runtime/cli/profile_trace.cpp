// Chrome trace-event JSON of `moetier profile` (see profile_trace.hpp).
#include "runtime/cli/profile_trace.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <numeric>

namespace moetier::cli {
namespace {

/// JSON string body: quotes, backslashes and control characters escaped.
std::string escaped(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out += c;
    }
  }
  return out;
}

const char* or_unknown(const char* s) { return s ? s : "?"; }

void append_event(std::string& out, const trace::Event& e, int32_t tid, int64_t t0_ns) {
  // ts and dur in microseconds with ns precision.
  const int64_t ts = e.begin_ns - t0_ns;
  const int64_t dur = std::max<int64_t>(e.dur_ns, 0);
  out += fmt::format(R"({{"name":"{}","cat":"{}","ph":"X","pid":1,"tid":{},"ts":{}.{:03d},"dur":{}.{:03d},"args":{{)",
                     escaped(or_unknown(e.name)), escaped(or_unknown(e.cat)), tid, ts / 1000, static_cast<int>(ts % 1000),
                     dur / 1000, static_cast<int>(dur % 1000));
  for (int i = 0; i < e.n_args; ++i)
    out += fmt::format(R"({}"{}":{})", i ? "," : "", escaped(or_unknown(e.args[i].key)), e.args[i].value);
  if (e.str_key)
    out += fmt::format(R"({}"{}":"{}")", e.n_args ? "," : "", escaped(e.str_key), escaped(or_unknown(e.str_value)));
  out += "}},\n";
}

void append_metadata(std::string& out, const char* what, int32_t tid, const std::string& name) {
  out += fmt::format(R"({{"name":"{}","ph":"M","pid":1,"tid":{},"ts":0,"args":{{"name":"{}"}}}},)", what, tid,
                     escaped(name));
  out += fmt::format(R"({{"name":"thread_sort_index","ph":"M","pid":1,"tid":{},"ts":0,"args":{{"sort_index":{}}}}},)",
                     tid, tid);
  out += '\n';
}

}  // namespace

std::vector<int> assign_lanes(std::span<const trace::Event> events) {
  std::vector<size_t> order(events.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return events[a].begin_ns < events[b].begin_ns; });
  std::vector<int64_t> lane_end;  // end of the last event of each lane
  std::vector<int> lane(events.size(), 0);
  for (const size_t i : order) {
    const trace::Event& e = events[i];
    const int64_t end = e.begin_ns + std::max<int64_t>(e.dur_ns, 0);
    size_t l = 0;
    while (l < lane_end.size() && lane_end[l] > e.begin_ns) ++l;
    if (l == lane_end.size()) lane_end.push_back(end);
    else lane_end[l] = end;
    lane[i] = static_cast<int>(l);
  }
  return lane;
}

std::string chrome_trace_json(const std::vector<trace::ThreadEvents>& threads, const std::string& process_name) {
  int64_t t0 = std::numeric_limits<int64_t>::max();
  std::vector<trace::Event> io;
  for (const auto& t : threads)
    for (const auto& e : t.events) {
      t0 = std::min(t0, e.begin_ns);
      if (e.track == trace::kIoTrack) io.push_back(e);
    }
  if (t0 == std::numeric_limits<int64_t>::max()) t0 = 0;
  const std::vector<int> lanes = assign_lanes(io);
  const int n_lanes = lanes.empty() ? 0 : *std::max_element(lanes.begin(), lanes.end()) + 1;

  std::string out = "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
  out += fmt::format(R"({{"name":"process_name","ph":"M","pid":1,"tid":0,"ts":0,"args":{{"name":"{}"}}}},)",
                     escaped(process_name));
  out += '\n';
  for (const auto& t : threads)
    if (!t.events.empty()) append_metadata(out, "thread_name", t.tid, t.name);
  for (int l = 0; l < n_lanes; ++l) append_metadata(out, "thread_name", kIoLaneTid0 + l, fmt::format("I/O ring lane {}", l));
  for (const auto& t : threads)
    for (const auto& e : t.events)
      if (e.track != trace::kIoTrack) append_event(out, e, e.track, t0);
  for (size_t i = 0; i < io.size(); ++i) append_event(out, io[i], kIoLaneTid0 + lanes[i], t0);
  if (out.size() >= 2 && out[out.size() - 2] == ',') out.erase(out.size() - 2, 1);  // no trailing comma
  out += "]}\n";
  return out;
}

}  // namespace moetier::cli
