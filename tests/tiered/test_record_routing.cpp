// `moetier run --record-routing FILE`: the JSONL it writes is readable by offload::read_routing_trace,
// holds exactly one record per (MoE layer, position) the model routed (the last layer of a prefill
// routes only the last prompt position), and its expert ids and weights are the model's own routing,
// replayed in this process over the same tokens. A run with every expert streamed from NVMe records the
// same trace and generates the same tokens.
#include <doctest/doctest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "offload/routing_trace.hpp"
#include "tests/tiered/tiered_test_util.hpp"

using namespace moetier;
using moetier::test::TempDir;
using Json = nlohmann::json;

namespace {

using Key = std::pair<int32_t, int32_t>;  // (layer, pos)
struct Routed {
  std::vector<int32_t> experts;
  std::vector<float> weights;
};

/// The routing the model computes for `prompt` then each of `generated` but the last (the last
/// sampled token is never evaluated), keyed by (layer, position).
std::map<Key, Routed> replay(const std::string& path, const std::vector<int32_t>& prompt,
                             const std::vector<int32_t>& generated) {
  test::LoadedModel m(path);
  const auto& hp = m.model->hparams();
  const auto k = static_cast<size_t>(hp.n_expert_used);
  std::map<Key, Routed> out;
  models::KvCache cache = m.model->new_cache(static_cast<int64_t>(prompt.size() + generated.size()) + 1);
  std::vector<float> logits;
  std::vector<models::RoutingRecord> rec;
  models::ForwardOptions opt;
  opt.routing = &rec;
  const auto collect = [&](int64_t pos0, int64_t n_tokens) {
    for (size_t il = 0; il < rec.size(); ++il) {
      const auto& r = rec[il];
      if (r.ids.empty()) {
        CHECK(!hp.is_moe_layer(static_cast<int>(il)));
        continue;
      }
      CHECK(hp.is_moe_layer(static_cast<int>(il)));
      const auto rows = static_cast<int64_t>(r.ids.size() / k);
      for (int64_t t = 0; t < rows; ++t) {
        const Key key{static_cast<int32_t>(il), static_cast<int32_t>(pos0 + n_tokens - rows + t)};
        Routed v;
        v.experts.assign(r.ids.begin() + static_cast<long>(t * k), r.ids.begin() + static_cast<long>((t + 1) * k));
        v.weights.assign(r.weights.begin() + static_cast<long>(t * k), r.weights.begin() + static_cast<long>((t + 1) * k));
        CHECK(out.emplace(key, std::move(v)).second);
      }
    }
  };
  m.model->forward(prompt, cache, logits, opt);
  collect(0, static_cast<int64_t>(prompt.size()));
  for (size_t i = 0; i + 1 < generated.size(); ++i) {
    const int64_t pos = cache.n_past;
    m.model->forward(std::span<const int32_t>(&generated[i], 1), cache, logits, opt);
    collect(pos, 1);
  }
  return out;
}

struct Recorded {
  Json result;
  offload::RoutingTrace trace;
};

Recorded record(const TempDir& dir, const std::string& model, std::vector<std::string> extra) {
  const std::string trace = dir.file("routing.jsonl");
  std::vector<std::string> args = {"run", "-m", model, "-p", "The quick brown fox jumps over the lazy dog", "-n", "6",
                                   "--temp", "0", "--ignore-eos", "--json", "--record-routing", trace};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto r = test::run_moetier(dir, args);
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  Recorded out;
  REQUIRE_NOTHROW(out.result = Json::parse(r.out));
  REQUIRE_NOTHROW(out.trace = offload::read_routing_trace(trace));
  return out;
}

void check_trace(const std::string& model_path, const Recorded& rec) {
  const auto prompt = rec.result.at("prompt_tokens").get<std::vector<int32_t>>();
  const auto generated = rec.result.at("generated_tokens").get<std::vector<int32_t>>();
  REQUIRE(generated.size() == 6);
  const auto expected = replay(model_path, prompt, generated);
  REQUIRE(!expected.empty());
  std::map<Key, Routed> got;
  for (const auto& r : rec.trace.records) {
    CHECK(r.seq == 0);
    CHECK(got.emplace(Key{r.layer, r.pos}, Routed{r.experts, r.weights}).second);  // one record per (layer, pos)
  }
  CHECK(got.size() == expected.size());
  size_t n_equal = 0;
  for (const auto& [key, v] : expected) {
    const auto it = got.find(key);
    CAPTURE(key.first);
    CAPTURE(key.second);
    REQUIRE(it != got.end());
    CHECK(it->second.experts == v.experts);
    CHECK(it->second.weights == v.weights);  // JSON numbers round-trip floats exactly
    n_equal += it->second.experts == v.experts && it->second.weights == v.weights;
  }
  CHECK(n_equal == expected.size());
  // Every MoE layer but the last covers every evaluated position; the last covers the last prompt
  // position and the decode positions.
  const int64_t n_positions = static_cast<int64_t>(prompt.size() + generated.size()) - 1;
  test::LoadedModel m(model_path);
  const auto& hp = m.model->hparams();
  for (int il = 0; il < hp.n_layer; ++il) {
    int64_t n = 0;
    for (const auto& [key, v] : got) n += key.first == il;
    if (!hp.is_moe_layer(il)) CHECK(n == 0);
    else if (il + 1 < hp.n_layer) CHECK(n == n_positions);
    else CHECK(n == static_cast<int64_t>(generated.size()));
  }
}

}  // namespace

TEST_CASE("run --record-routing: one record per (layer, position), equal to the model's routing") {
  TempDir dir;
  for (const std::string preset : {"tiny-qwen3moe", "tiny-deepseek2"}) {
    CAPTURE(preset);
    const std::string path = dir.file(preset + ".gguf");
    test::write_tiny_model(path, preset, GgmlType::Q4_K);
    const Recorded resident = record(dir, path, {});
    check_trace(path, resident);
    // Streaming every expert from NVMe through a small cache records the same routing and tokens.
    const Recorded streamed = record(dir, path, {"--experts-on-nvme", "all", "--cache-size", "1MiB"});
    CHECK(streamed.result.at("generated_tokens") == resident.result.at("generated_tokens"));
    REQUIRE(streamed.result.contains("expert_cache"));
    CHECK(streamed.result["expert_cache"]["requests"].get<uint64_t>() > 0);
    CHECK(streamed.trace.records.size() == resident.trace.records.size());
    check_trace(path, streamed);
  }
}
