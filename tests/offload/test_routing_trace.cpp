// Tests of offload/routing_trace: our JSONL format round trip, errors naming file and line, the Mixtral
// trace in ../shared/traces, decode order.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <unistd.h>

#include "../shared_data.hpp"
#include "common/error.hpp"
#include "offload/routing_trace.hpp"

using namespace moetier::offload;

namespace {

struct TempPath {
  std::string path;
  explicit TempPath(const char* tag)
      : path((std::filesystem::temp_directory_path() /
              ("moetier-trace-" + std::to_string(::getpid()) + "-" + tag + ".jsonl"))
                 .string()) {}
  ~TempPath() { std::filesystem::remove(path); }
  void write(const std::string& text) const { std::ofstream(path) << text; }
};

RoutingTrace random_trace(uint64_t seed) {
  std::mt19937_64 rng(seed);
  RoutingTrace t;
  for (int32_t seq = 0; seq < 2; ++seq)
    for (int32_t layer = 0; layer < 4; ++layer)
      for (int32_t pos = 0; pos < 5; ++pos) {
        RoutingRecord r;
        r.seq = seq;
        r.layer = layer;
        r.pos = pos;
        for (int k = 0; k < 3; ++k) {
          r.experts.push_back(static_cast<int32_t>(rng() % 16));
          r.weights.push_back(static_cast<float>(rng() % 1000) / 997.0f);
        }
        t.records.push_back(r);
      }
  return t;
}

}  // namespace

TEST_CASE("routing trace: write then read gives the same records") {
  const RoutingTrace t = random_trace(1);
  const TempPath p("roundtrip");
  write_routing_trace(p.path, t);
  const RoutingTrace back = read_routing_trace(p.path);
  REQUIRE(back.records.size() == t.records.size());
  for (size_t i = 0; i < t.records.size(); ++i) {
    CHECK(back.records[i].seq == t.records[i].seq);
    CHECK(back.records[i].layer == t.records[i].layer);
    CHECK(back.records[i].pos == t.records[i].pos);
    CHECK(back.records[i].experts == t.records[i].experts);
    CHECK(back.records[i].weights == t.records[i].weights);  // floats survive exactly
  }
  CHECK(read_any_trace(p.path).records.size() == t.records.size());
}

TEST_CASE("routing trace: decode order is (seq, pos, layer) with one group per step") {
  const RoutingTrace t = random_trace(2);  // file order: seq, layer, pos
  const std::vector<ExpertRequest> order = t.decode_order();
  size_t n = 0;
  for (const RoutingRecord& r : t.records) n += r.experts.size();
  REQUIRE(order.size() == n);
  // Rebuild the expected order independently.
  std::vector<ExpertRequest> expect;
  uint32_t g = 0;
  for (int32_t seq = 0; seq < 2; ++seq)
    for (int32_t pos = 0; pos < 5; ++pos)
      for (int32_t layer = 0; layer < 4; ++layer) {
        for (const RoutingRecord& r : t.records)
          if (r.seq == seq && r.pos == pos && r.layer == layer)
            for (int32_t e : r.experts) expect.push_back({{layer, e}, g});
        ++g;
      }
  REQUIRE(expect.size() == order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    CHECK(order[i].id == expect[i].id);
    CHECK(order[i].group == expect[i].group);
  }
  const auto counts = t.usage_counts(4, 16);
  uint64_t total = 0;
  for (const auto& row : counts)
    for (uint64_t c : row) total += c;
  CHECK(total == n);
  CHECK_THROWS_AS(t.usage_counts(3, 16), moetier::Error);
}

TEST_CASE("routing trace: bad lines name the file and line") {
  const TempPath p("bad");
  const std::string good = R"({"layer":0,"pos":0,"experts":[1,2],"weights":[0.5,0.5]})";
  struct Case {
    const char* line;
    const char* expect;
  };
  const Case cases[] = {
      {"{not json", "invalid JSON"},
      {R"({"pos":0,"experts":[1],"weights":[1]})", "missing field \"layer\""},
      {R"({"layer":0,"pos":0,"experts":[1,2],"weights":[1]})", "2 entries"},
      {R"({"layer":0,"pos":0,"experts":[-1],"weights":[1]})", "non-negative"},
      {R"({"layer":"x","pos":0,"experts":[1],"weights":[1]})", "\"layer\" must be"},
      {R"({"layer":0,"pos":0,"experts":[1],"weights":["a"]})", "weights must be numbers"},
      {R"([1,2,3])", "expected a JSON object"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.line);
    p.write(good + "\n\n" + c.line + "\n" + good + "\n");
    CHECK_THROWS_WITH_AS(read_routing_trace(p.path), doctest::Contains((p.path + ":3: ").c_str()), moetier::Error);
    CHECK_THROWS_WITH_AS(read_routing_trace(p.path), doctest::Contains(c.expect), moetier::Error);
  }
  CHECK_THROWS_WITH_AS(read_routing_trace("/nonexistent/trace.jsonl"), doctest::Contains("cannot open"),
                       moetier::Error);
}

TEST_CASE("routing trace: the shared Mixtral trace" * doctest::skip(moetier::test::no_shared())) {
  const std::string path = (moetier::test::shared_dir() / "traces" / "mixtral-8x7b-humaneval-2.jsonl").string();
  const RoutingTrace t = read_mixtral_trace(path);
  size_t lines = 0;
  {
    std::ifstream in(path);
    std::string s;
    while (std::getline(in, s)) lines += !s.empty();
  }
  CHECK(t.records.size() == lines);
  CHECK(t.n_layers() == 32);  // Mixtral 8x7B: 32 blocks, 8 experts, top-2
  CHECK(t.n_experts() == 8);
  for (const RoutingRecord& r : t.records) {
    REQUIRE(r.experts.size() == 2);
    CHECK(r.experts[0] != r.experts[1]);
    CHECK(r.weights[0] + r.weights[1] == doctest::Approx(1.0).epsilon(1e-4));
  }
  const RoutingTrace auto_read = read_any_trace(path);
  CHECK(auto_read.records.size() == t.records.size());
  const auto order = t.decode_order();
  CHECK(order.size() == 2 * lines);
  for (size_t i = 2; i < order.size(); i += 2) CHECK(order[i].group == order[i - 2].group + 1);
  // The Mixtral reader rejects our format (missing problem-specific field names) with a line number.
  const TempPath p("ours");
  write_routing_trace(p.path, RoutingTrace{{RoutingRecord{0, 0, 0, {1}, {1.0f}}}});
  CHECK_THROWS_WITH_AS(read_mixtral_trace(p.path), doctest::Contains(":1: missing field \"token_idx\""),
                       moetier::Error);
}
