// `moetier profile` end to end through the built binary (MOETIER_BIN), on a tiny synthetic DeepSeek-V2
// with every expert streamed through a 2-expert cache (so reads, stalls and evictions happen):
// trace.json is a trace-event document (every event has ph / ts / pid / tid, complete events have
// dur >= 0 and nest properly on their track, every track used is named, the I/O lanes and the workers
// are there); the bytes of its read events sum to the bytes the expert cache reports in summary.json;
// summary.json has its fields and the decode shares sum to 1, the trace's attention and expert spans
// agree with the model's and the executor's counters within 10 %; routing.jsonl is a routing trace with one
// record per (MoE layer, position) that `plan --trace` replays; heatmap.svg is well-formed XML (python3
// xml.etree) with one cell per layer x expert; with the simulated device the device stream has its own
// track; a bad -o is one line. The trace writer alone: overlapping reads are spread over lanes with no
// overlap inside a lane; the JSON has thread names, microseconds and escaped strings.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/trace_events.hpp"
#include "offload/routing_trace.hpp"
#include "runtime/cli/profile_trace.hpp"
#include "runtime/tuning/machine_profile.hpp"
#include "tests/run_util.hpp"

using Json = nlohmann::json;
using namespace moetier;

namespace {

using test::check_one_line_error;
using test::RunResult;
using test::slurp;
using test::TempDir;

struct Model {
  TempDir dir;
  std::string path = dir.file("tiny-deepseek-v2-lite.gguf");  // a dense lead layer, shared experts
  Model() {
    const RunResult r =
        test::run_moetier(dir, {"synth", "--preset", "tiny-deepseek-v2-lite", "--type", "Q4_K", "-o", path});
    if (r.status != 0) FAIL("moetier synth failed: " << r.err);
  }
};
const Model& model() {
  static Model m;
  return m;
}

struct Profiled {
  TempDir dir;
  std::string out = dir.file("prof");
  RunResult r;
  Json trace, summary;
};

void profile(Profiled& p, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"profile", "-m", model().path, "-p", "The quick brown fox", "-n", "12", "-t", "2",
                                   "--temp", "0", "-o", p.out};
  args.insert(args.end(), extra.begin(), extra.end());
  p.r = test::run_moetier(p.dir, args);
  INFO(p.r.err);
  REQUIRE(p.r.status == 0);
  p.trace = Json::parse(slurp(p.out + "/trace.json"));
  p.summary = Json::parse(slurp(p.out + "/summary.json"));
}

/// Checks the trace-event format; returns the names of the tracks (tid -> thread_name).
std::map<int64_t, std::string> check_trace_format(const Json& trace) {
  REQUIRE(trace.contains("traceEvents"));
  const Json& ev = trace.at("traceEvents");
  REQUIRE(ev.is_array());
  std::map<int64_t, std::string> names;
  std::map<int64_t, std::vector<std::pair<double, double>>> spans;  // tid -> (ts, end)
  for (const Json& e : ev) {
    REQUIRE(e.contains("ph"));
    REQUIRE(e.contains("ts"));
    REQUIRE(e.contains("pid"));
    REQUIRE(e.contains("tid"));
    REQUIRE(e.contains("name"));
    const std::string ph = e.at("ph");
    CHECK((ph == "X" || ph == "M"));
    if (ph == "M") {
      if (e.at("name") == "thread_name") names[e.at("tid").get<int64_t>()] = e.at("args").at("name");
      continue;
    }
    REQUIRE(e.contains("dur"));
    CHECK(e.at("dur").get<double>() >= 0);
    CHECK(e.at("ts").get<double>() >= 0);
    spans[e.at("tid").get<int64_t>()].emplace_back(e.at("ts").get<double>(), e.at("ts").get<double>() + e.at("dur").get<double>());
  }
  // Complete events of one track nest (or follow each other): no partial overlap, so a viewer's stack
  // per track is exact. Sorted by begin (longer first on ties), each event must end inside every open one.
  constexpr double kSlackUs = 0.002;  // ts and dur are rounded to ns separately
  for (auto& [tid, v] : spans) {
    CHECK_MESSAGE(names.count(tid) == 1, "track " << tid << " has events but no thread_name");
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first != b.first ? a.first < b.first : a.second > b.second; });
    std::vector<double> open_ends;
    for (const auto& [b, e] : v) {
      while (!open_ends.empty() && open_ends.back() <= b + kSlackUs) open_ends.pop_back();
      if (!open_ends.empty()) CHECK_MESSAGE(e <= open_ends.back() + kSlackUs, "track " << tid << ": event at " << b << " overlaps its parent");
      open_ends.push_back(e);
    }
  }
  return names;
}

uint64_t sum_arg(const Json& trace, const std::string& name, const std::string& key) {
  uint64_t s = 0;
  for (const Json& e : trace.at("traceEvents"))
    if (e.at("ph") == "X" && e.at("name") == name) s += e.at("args").at(key).get<uint64_t>();
  return s;
}

size_t count_named(const Json& trace, const std::string& name) {
  size_t n = 0;
  for (const Json& e : trace.at("traceEvents")) n += e.at("ph") == "X" && e.at("name") == name;
  return n;
}

}  // namespace

TEST_CASE("profile: streamed experts: trace format, read bytes = cache bytes, summary, routing, heat map") {
  Profiled p;
  profile(p, {"--experts-on-nvme", "all", "--cache-size", "2"});
  const auto names = check_trace_format(p.trace);
  bool worker = false, lane = false, main = false;
  for (const auto& [tid, n] : names) {
    worker = worker || n == "worker 1";
    lane = lane || n.rfind("I/O ring lane", 0) == 0;
    main = main || n.rfind("main", 0) == 0;
  }
  CHECK(worker);
  CHECK(lane);
  CHECK(main);
  CHECK(count_named(p.trace, "attention") > 0);
  CHECK(count_named(p.trace, "router") > 0);
  CHECK(count_named(p.trace, "expert") > 0);
  CHECK(count_named(p.trace, "stall") > 0);
  CHECK(count_named(p.trace, "wait") > 0);

  // The bytes of the trace's reads are the bytes the cache counted (two different counters).
  const Json& s = p.summary;
  const uint64_t cache_bytes = s.at("expert_cache").at("whole_run").at("bytes_read");
  CHECK(cache_bytes > 0);
  CHECK(sum_arg(p.trace, "read", "bytes") == cache_bytes);
  // Every demand of the cache shows up as a demand event.
  CHECK(count_named(p.trace, "demand") == s.at("expert_cache").at("whole_run").at("requests").get<size_t>());

  CHECK(s.at("schema") == "moetier.profile/1");
  CHECK(s.at("generated_tokens") == 12);
  CHECK(s.at("decode").at("steps") == 11);  // the last sampled token is not evaluated
  CHECK(s.at("decode").at("tokens_per_s_traced").get<double>() > 0);
  CHECK(s.at("decode").at("untraced_runs_tokens_per_s").size() == 2);
  CHECK(s.at("decode").contains("tracing_overhead_pct"));
  const Json& sh = s.at("time_share");
  const double a = sh.at("attention"), e = sh.at("experts"), r = sh.at("rest");
  CHECK(a > 0);
  CHECK(e > 0);
  CHECK(a + e + r == doctest::Approx(1.0).epsilon(1e-9));
  CHECK(a + e <= 1.0);
  CHECK(sh.at("rest_includes").at("io_stall").get<double>() <= r + 1e-9);
  // The trace's attention and expert-group spans cover what Model::phase_times and the executor's
  // counters timed over the traced run: attention spans sit just inside the timed region, expert-group
  // spans just around it (they also take the args and the stats update); within 10 %.
  double attention_us = 0, experts_us = 0;
  for (const Json& ev : p.trace.at("traceEvents")) {
    if (ev.at("ph") != "X") continue;
    if (ev.at("cat") == "attention") attention_us += ev.at("dur").get<double>();
    if (ev.at("cat") == "experts") experts_us += ev.at("dur").get<double>();
  }
  const Json& counters = s.at("counters_whole_run_ms");
  CHECK(attention_us / 1e3 <= counters.at("attention").get<double>() + 0.01);
  CHECK(attention_us / 1e3 >= 0.9 * counters.at("attention").get<double>());
  CHECK(experts_us / 1e3 >= counters.at("expert_compute").get<double>() - 0.01);
  CHECK(experts_us / 1e3 <= 1.1 * counters.at("expert_compute").get<double>());
  std::map<std::string, Json> tiers;
  for (const Json& t : s.at("tiers")) tiers[t.at("tier")] = t;
  REQUIRE(tiers.count("dram") == 1);
  REQUIRE(tiers.count("nvme") == 1);
  CHECK(tiers["dram"].at("ceiling_gbps").get<double>() > 0);
  CHECK(tiers["nvme"].at("bytes_per_token").get<double>() > 0);
  CHECK(tiers["nvme"].at("bytes_per_token").get<double>() * 11 ==
        doctest::Approx(s.at("expert_cache").at("decode").at("bytes_read").get<double>()));
  const Json& c = s.at("expert_cache").at("decode");
  CHECK(c.at("hits").get<uint64_t>() + c.at("prefetched").get<uint64_t>() + c.at("misses").get<uint64_t>() > 0);
  CHECK(s.at("prediction").at("predicted").get<uint64_t>() >= s.at("prediction").at("correct").get<uint64_t>());
  CHECK(p.r.out.find("| dram") != std::string::npos);
  CHECK(p.r.out.find("tracing overhead") != std::string::npos);

  // routing.jsonl: one record per MoE layer (layers 1.. of this model) and evaluated position.
  const auto routing = offload::read_routing_trace(p.out + "/routing.jsonl");
  CHECK(!routing.records.empty());
  std::map<std::pair<int32_t, int32_t>, int> seen;
  for (const auto& rec : routing.records) CHECK(++seen[{rec.layer, rec.pos}] == 1);
  const RunResult plan = test::run_moetier(p.dir, {"plan", "-m", model().path, "--experts-on-nvme", "all", "--cache-size", "2",
                                                  "--dram-gbps", "10", "--trace", p.out + "/routing.jsonl"});
  INFO(plan.err);
  CHECK(plan.status == 0);
  CHECK(plan.out.find("routing from trace") != std::string::npos);

  // heatmap.svg: well-formed XML, one cell per layer x expert (layers and experts from the routing trace's
  // model: the synth preset's n_layer and n_expert as inspect reports them).
  const RunResult ins = test::run_moetier(p.dir, {"inspect", "--json", model().path});
  REQUIRE(ins.status == 0);
  const Json hp = Json::parse(ins.out).at("hparams");
  const int64_t n_cells = hp.at("n_layer").get<int64_t>() * hp.at("n_expert").get<int64_t>();
  const std::string py = "import sys, xml.etree.ElementTree as E\n"
                         "r = E.parse(sys.argv[1]).getroot()\n"
                         "ns = '{http://www.w3.org/2000/svg}'\n"
                         "assert r.tag == ns + 'svg', r.tag\n"
                         "print(sum(1 for e in r.iter(ns + 'rect') if e.get('class') == 'cell'))\n";
  test::spit(p.dir.file("check_svg.py"), py);
  const std::string cmd = "python3 " + test::shell_quote(p.dir.file("check_svg.py")) + " " +
                          test::shell_quote(p.out + "/heatmap.svg") + " > " + test::shell_quote(p.dir.file("svg.txt")) + " 2>&1";
  const int rc = std::system(cmd.c_str());
  INFO(slurp(p.dir.file("svg.txt")));
  REQUIRE(rc == 0);
  CHECK(std::stoll(slurp(p.dir.file("svg.txt"))) == n_cells);
}

TEST_CASE("profile: the simulated device's stream is a track of its own") {
  Profiled p;
  profile(p, {"--sim-device", "64MiB,0", "--baseline-runs", "0"});
  const auto names = check_trace_format(p.trace);
  int64_t stream_tid = -1;
  for (const auto& [tid, n] : names)
    if (n == "sim:0 stream") stream_tid = tid;
  REQUIRE(stream_tid >= 0);
  size_t on_stream = 0;
  for (const Json& e : p.trace.at("traceEvents"))
    if (e.at("ph") == "X" && e.at("tid") == stream_tid) {
      CHECK(e.at("cat") == "device");
      CHECK(e.at("args").at("tier") == "sim");
      ++on_stream;
    }
  CHECK(on_stream > 0);
  bool device_tier = false;
  for (const Json& t : p.summary.at("tiers")) device_tier = device_tier || t.at("tier") == "sim:0";
  CHECK(device_tier);
  CHECK(p.summary.at("decode").at("tracing_overhead_pct").is_null());
}

TEST_CASE("profile: --machine gives the disk ceiling; a file that is not JSON is one line") {
  {
    Profiled p;
    // A profile as `moetier calibrate` writes it: the best disk figure is the NVMe ceiling.
    tuning::MachineProfile mp;
    mp.created = "2026-12-06T00:00:00Z";
    mp.max_threads = 1;
    mp.dram.push_back({1, 10.0, {"test", 1, 1, 1}});
    mp.disk.push_back({1 << 20, 8, 1.5, {"test", 1 << 20, 1, 1}});
    mp.disk.push_back({1 << 20, 32, 2.5, {"test", 1 << 20, 1, 1}});
    tuning::write_machine_profile(p.dir.file("machine.json"), mp);
    profile(p, {"--experts-on-nvme", "all", "--cache-size", "2", "--baseline-runs", "0", "--machine", p.dir.file("machine.json")});
    bool found = false;
    for (const Json& t : p.summary.at("tiers"))
      if (t.at("tier") == "nvme") {
        found = true;
        CHECK(t.at("ceiling_gbps").get<double>() == doctest::Approx(2.5));
        CHECK(t.at("ceiling_from").get<std::string>().find("machine.json") != std::string::npos);
      }
    CHECK(found);
    CHECK(p.summary.at("ceilings").at("disk_read_gbps").get<double>() == doctest::Approx(2.5));
  }
  TempDir dir;
  test::spit(dir.file("m.json"), "not json");
  check_one_line_error(test::run_moetier(dir, {"profile", "-m", model().path, "-p", "hi", "-n", "2", "-o", dir.file("o"),
                                               "--machine", dir.file("m.json")}),
                       {"m.json"});
}

TEST_CASE("profile: -o naming a file, and run-only options, are one line") {
  TempDir dir;
  test::spit(dir.file("a_file"), "x");
  check_one_line_error(test::run_moetier(dir, {"profile", "-m", model().path, "-p", "hi", "-n", "2", "-o", dir.file("a_file")}),
                       {"a_file", "not a folder"});
  CHECK(slurp(dir.file("a_file")) == "x");
  check_one_line_error(test::run_moetier(dir, {"profile", "-m", model().path, "-p", "hi", "-n", "2", "-o", dir.file("o"),
                                               "--record-routing", dir.file("r.jsonl")}),
                       {"--record-routing"});
  check_one_line_error(test::run_moetier(dir, {"profile", "-m", model().path, "-p", "hi", "-n", "1", "-o", dir.file("o")}),
                       {"-n 1", "at least 2"});
}

TEST_CASE("profile trace: lanes never overlap, and reuse a lane once it is free") {
  struct Case {
    std::vector<std::pair<int64_t, int64_t>> spans;  // begin, dur
    int want_lanes;
  };
  const std::vector<Case> cases = {
      {{{0, 10}, {10, 5}, {20, 1}}, 1},             // back to back: one lane
      {{{0, 10}, {5, 10}, {8, 1}}, 3},              // three in flight at t = 8
      {{{0, 10}, {5, 10}, {12, 1}, {16, 1}}, 2},    // the third reuses lane 0
      {{{30, 1}, {0, 100}, {10, 5}}, 2},            // order of input does not matter
  };
  for (const auto& c : cases) {
    std::vector<trace::Event> ev;
    for (const auto& [b, d] : c.spans) {
      trace::Event e;
      e.begin_ns = b;
      e.dur_ns = d;
      ev.push_back(e);
    }
    const auto lanes = cli::assign_lanes(ev);
    REQUIRE(lanes.size() == ev.size());
    CHECK(*std::max_element(lanes.begin(), lanes.end()) + 1 == c.want_lanes);
    for (size_t i = 0; i < ev.size(); ++i)
      for (size_t j = i + 1; j < ev.size(); ++j)
        if (lanes[i] == lanes[j]) {
          const bool apart = ev[i].begin_ns + ev[i].dur_ns <= ev[j].begin_ns || ev[j].begin_ns + ev[j].dur_ns <= ev[i].begin_ns;
          CHECK_MESSAGE(apart, "events " << i << " and " << j << " overlap on lane " << lanes[i]);
        }
  }
}

TEST_CASE("profile trace: JSON document with thread names, X events in microseconds, escaped strings") {
  trace::ThreadEvents t;
  t.tid = 7;
  t.name = "work\"er";
  trace::Event e;
  e.name = "expert";
  e.cat = "experts";
  e.track = 7;
  e.begin_ns = 1'000'000;
  e.dur_ns = 2'500;
  e.arg("bytes", 123).str("tier", "dram");
  t.events.push_back(e);
  e.track = trace::kIoTrack;
  e.begin_ns = 1'001'000;
  t.events.push_back(e);
  const auto j = nlohmann::json::parse(cli::chrome_trace_json({t}, "p"));
  const auto& ev = j.at("traceEvents");
  bool named = false, lane_named = false;
  int n_x = 0;
  for (const auto& x : ev) {
    if (x.at("ph") == "M" && x.at("name") == "thread_name" && x.at("tid") == 7) named = x.at("args").at("name") == "work\"er";
    if (x.at("ph") == "M" && x.at("name") == "thread_name" && x.at("tid") == cli::kIoLaneTid0) lane_named = true;
    if (x.at("ph") != "X") continue;
    ++n_x;
    CHECK(x.at("dur").get<double>() == doctest::Approx(2.5));
    CHECK(x.at("args").at("bytes") == 123);
    CHECK(x.at("args").at("tier") == "dram");
  }
  CHECK(named);
  CHECK(lane_named);
  CHECK(n_x == 2);
}
