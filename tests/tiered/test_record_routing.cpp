// `moetier run --record-routing FILE`: the JSONL it writes is readable by offload::read_routing_trace,
// holds exactly one record per (MoE layer, position) the model routed (the last layer of a prefill
// routes only the last prompt position), and its expert ids and weights are the model's own routing,
// replayed in this process over the same tokens. A run with every expert streamed from NVMe records the
// same trace and generates the same tokens. A model cut to one layer (its only MoE layer is also the
// last) records the last prompt position, not position 0, and on a crop of ../shared's mixtral-tiny the
// recorded experts are llama.cpp's router choices for that position.
#include <doctest/doctest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "offload/routing_trace.hpp"
#include "runtime/gguf/gguf_writer.hpp"
#include "tests/models/golden_util.hpp"
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

/// Writes to `dst` the model of `src` cut after its first `n_layers` blocks: <arch>.block_count rewritten,
/// the tensors of later blocks dropped, everything else copied byte for byte.
void write_cropped(const std::string& src, const std::string& dst, int n_layers) {
  const auto g = gguf::GgufModel::open(src);
  gguf::GgufWriter w;
  const std::string count_key = g.architecture() + ".block_count";
  for (const std::string& key : g.metadata().keys()) {
    gguf::Value v = *g.metadata().find(key);
    if (key == count_key) v.data = static_cast<uint64_t>(n_layers);
    w.set(key, v);
  }
  std::vector<const gguf::TensorInfo*> kept;
  for (const auto& t : g.tensors()) {
    if (t.name.rfind("blk.", 0) == 0 && std::stoi(t.name.substr(4)) >= n_layers) continue;
    w.add_tensor(t.name, t.type, t.shape);
    kept.push_back(&t);
  }
  w.write(dst, [&](size_t ti, uint64_t off, std::span<std::byte> out) {
    const auto bytes = g.data(*kept[ti]);
    std::copy_n(bytes.begin() + static_cast<long>(off), out.size(), out.begin());
  });
}

Recorded record(const TempDir& dir, const std::string& model, std::vector<std::string> extra,
                const std::string& prompt = "The quick brown fox jumps over the lazy dog") {
  const std::string trace = dir.file("routing.jsonl");
  std::vector<std::string> args = {"run", "-m", model, "-p", prompt, "-n", "6",
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

TEST_CASE("run --record-routing: a 1-layer model (its only MoE layer is the last) records the right positions") {
  // The last layer of a prefill routes only the last prompt token; with no other MoE layer in the call
  // that row used to be labelled position 0.
  TempDir dir;
  for (const std::string preset : {"tiny-qwen3moe", "tiny-mixtral"}) {
    CAPTURE(preset);
    const std::string full = dir.file(preset + ".gguf"), cut = dir.file(preset + "-1layer.gguf");
    test::write_tiny_model(full, preset, GgmlType::Q8_0);
    write_cropped(full, cut, 1);
    REQUIRE(test::LoadedModel(cut).model->hparams().n_layer == 1);
    REQUIRE(test::LoadedModel(cut).model->hparams().is_moe_layer(0));
    const Recorded rec = record(dir, cut, {});
    check_trace(cut, rec);
    // Positions in order: the last prompt position, then one per decoded token.
    const auto n_prompt = static_cast<int32_t>(rec.result.at("prompt_tokens").size());
    REQUIRE(n_prompt > 1);
    REQUIRE(rec.trace.records.size() == 6);
    for (size_t i = 0; i < rec.trace.records.size(); ++i) {
      CHECK(rec.trace.records[i].layer == 0);
      CHECK(rec.trace.records[i].pos == n_prompt - 1 + static_cast<int32_t>(i));
    }
  }
}

TEST_CASE("run --record-routing: a 1-layer crop of mixtral-tiny records llama.cpp's router choices" *
          doctest::skip(test::no_shared())) {
  const auto golden_dir = test::shared_dir() / "golden" / "mixtral-tiny-q8_0";
  const auto golden = test::read_json(golden_dir / "golden.json");
  const auto& p0 = golden["prompts"][0];
  const auto tokens = p0["tokens"].get<std::vector<int32_t>>();
  const auto index = test::read_json(golden_dir / "dump_p0" / "index.json");
  const std::string topk_file = test::dump_file(index, "ffn_moe_topk-0");
  REQUIRE(!topk_file.empty());
  const auto topk = test::read_npy((golden_dir / "dump_p0" / topk_file).string()).i32;  // [n_tokens, k] of layer 0
  TempDir dir;
  const std::string cut = dir.file("mixtral-tiny-q8_0-1layer.gguf");
  write_cropped((test::shared_dir() / "models" / "mixtral-tiny-q8_0.gguf").string(), cut, 1);
  const auto k = static_cast<size_t>(test::LoadedModel(cut).model->hparams().n_expert_used);
  REQUIRE(topk.size() == tokens.size() * k);
  // Layer 0 sees the same input whether the model has 1 layer or 3: its router picks llama.cpp's experts.
  for (const auto& extra : {std::vector<std::string>{}, std::vector<std::string>{"--experts-on-nvme", "all"}}) {
    const Recorded rec = record(dir, cut, extra, p0["text"].get<std::string>());
    REQUIRE(rec.result.at("prompt_tokens").get<std::vector<int32_t>>() == tokens);
    REQUIRE(!rec.trace.records.empty());
    const auto& first = rec.trace.records.front();
    CHECK(first.layer == 0);
    CHECK(first.pos == static_cast<int32_t>(tokens.size()) - 1);
    const std::vector<int32_t> want(topk.end() - static_cast<long>(k), topk.end());  // the last position's row
    CHECK(first.experts == want);
    check_trace(cut, rec);
  }
}
