// `moetier run` end to end, through the built binary (path in env MOETIER_BIN, set by meson): JSON
// output, determinism (same command twice; -t 1 vs -t 2 give the same tokens and bit-identical logits),
// one-line errors with exit status 1 (prompt longer than the context, missing / non-GGUF model file,
// unsupported architecture, invalid sampling options), and greedy continuations of the ../shared
// reference models equal to llama.cpp's (golden.json), when ../shared is present.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/models/golden_util.hpp"
#include "tests/run_util.hpp"
#include "tests/shared_data.hpp"

using Json = nlohmann::json;
using namespace moetier;

namespace {

using test::RunResult;
using test::slurp;
using test::spit;
using test::TempDir;

RunResult run_cli(const TempDir& dir, const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  return test::run_moetier(dir, args, env);
}

/// A failure: exit status 1 and exactly one line "moetier: error: ..." on stderr holding every part.
void check_one_line_error(const RunResult& r, std::initializer_list<std::string> parts) {
  CAPTURE(r.err);
  CHECK(r.status == 1);
  CHECK(r.err.rfind("moetier: error: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  for (const auto& p : parts) CHECK_MESSAGE(r.err.find(p) != std::string::npos, "stderr lacks \"" << p << "\"");
}

/// The JSON result of a successful `run --json`.
Json run_json(const TempDir& dir, const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  const RunResult r = run_cli(dir, args, env);
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  Json j;
  REQUIRE_NOTHROW(j = Json::parse(r.out));  // stdout is only the JSON document
  return j;
}

/// One synthesized tiny-qwen3moe (Q4_K requested) for the whole executable.
struct TinyModel {
  TempDir dir;
  std::string path = dir.file("tiny-qwen3moe.gguf");
  TinyModel() {
    const RunResult r = run_cli(dir, {"synth", "--preset", "tiny-qwen3moe", "--type", "Q4_K", "-o", path});
    if (r.status != 0) FAIL("moetier synth failed: " << r.err);
  }
};
const TinyModel& tiny() {
  static TinyModel m;
  return m;
}

/// A synthesized tiny-deepseek2 (Q4_K requested): its expert outputs are large enough against the residual
/// that another f32 summation order in the experts shows in the logits (tiny-qwen3moe's do not).
struct TinyDeepseek {
  TempDir dir;
  std::string path = dir.file("tiny-deepseek2.gguf");
  TinyDeepseek() {
    const RunResult r = run_cli(dir, {"synth", "--preset", "tiny-deepseek2", "--type", "Q4_K", "-o", path});
    if (r.status != 0) FAIL("moetier synth failed: " << r.err);
  }
};

const std::string kPrompt = "The quick brown fox jumps over the lazy dog, and then it runs far away into the woods.";

}  // namespace

TEST_CASE("run --json: 8 greedy tokens (or fewer ending in eog) and the prompt's tokens") {
  TempDir dir;
  const Json j = run_json(dir, {"run", "-m", tiny().path, "-p", kPrompt, "-n", "8", "--temp", "0", "--json"});
  CHECK(j["schema"] == "moetier.run/1");
  CHECK(j["model"] == tiny().path);
  CHECK(j["prompt"] == kPrompt);
  REQUIRE(j["generated_tokens"].is_array());
  const auto gen = j["generated_tokens"].get<std::vector<int32_t>>();
  const std::string stop = j["stop_reason"];
  if (gen.size() == 8) CHECK(stop == "n_predict");
  else CHECK((gen.size() < 8 && stop == "eog"));
  for (int32_t t : gen) CHECK((t >= 0 && t < 512));  // tiny presets have 512 tokens
  const auto prompt_tokens = j["prompt_tokens"].get<std::vector<int32_t>>();
  CHECK(prompt_tokens.size() > 5);
  CHECK(j["text"].is_string());
  CHECK(j["timings"]["prompt_n"] == prompt_tokens.size());
}

TEST_CASE("run: the same command twice gives the same tokens; -t 1 and -t 2 give identical logits") {
  TempDir dir;
  std::vector<std::vector<int32_t>> gens;
  std::vector<std::string> dumps;
  for (const char* threads : {"1", "2", "1", "2"}) {
    CAPTURE(threads);
    const std::string dump = dir.file(std::string("logits-") + std::to_string(dumps.size()) + ".f32");
    const Json j = run_json(dir, {"run", "-m", tiny().path, "-p", kPrompt, "-n", "8", "--temp", "0", "-t", threads,
                                  "--json", "--dump-logits", dump});
    CHECK(j["threads"] == std::atoi(threads));
    gens.push_back(j["generated_tokens"].get<std::vector<int32_t>>());
    dumps.push_back(slurp(dump));
  }
  REQUIRE(dumps[0].size() == 512 * sizeof(float));  // logits [n_vocab] f32 of the last prompt position
  std::vector<float> logits(512);
  std::memcpy(logits.data(), dumps[0].data(), dumps[0].size());
  CHECK(std::all_of(logits.begin(), logits.end(), [](float x) { return std::isfinite(x); }));
  CHECK(*std::max_element(logits.begin(), logits.end()) > *std::min_element(logits.begin(), logits.end()));
  for (size_t i = 1; i < gens.size(); ++i) {
    CAPTURE(i);
    CHECK(gens[i] == gens[0]);
    CHECK(dumps[i] == dumps[0]);  // bit-identical across runs and thread counts
  }
  // Seeded sampling is reproducible too.
  const std::vector<std::string> sampled = {"run", "-m", tiny().path, "-p", kPrompt, "-n", "8", "--temp", "1.5",
                                            "--seed", "7", "--json"};
  CHECK(run_json(dir, sampled)["generated_tokens"] == run_json(dir, sampled)["generated_tokens"]);
}

TEST_CASE("run: --gemm-min-batch 1 sends expert batches to the prefill GEMM; -t 1 = -t 2; close to ggml's path") {
  TempDir dir;
  const TinyDeepseek model;
  std::vector<std::string> dumps;
  std::vector<Json> js;
  for (const char* opt : {"1", "1", "0"}) {
    const std::string threads = dumps.size() == 1 ? "2" : "1";
    CAPTURE(opt);
    CAPTURE(threads);
    const std::string dump = dir.file("logits-" + std::to_string(dumps.size()) + ".f32");
    // MOETIER_ISA=avx512: no AMX, whose exact int8 tiles would take the Q4_K batches of >= 9 tokens instead
    js.push_back(run_json(dir, {"run", "-m", model.path, "-p", kPrompt, "-n", "2", "--temp", "0", "-t", threads,
                                "--gemm-min-batch", opt, "--json", "--dump-logits", dump}, {"MOETIER_ISA=avx512"}));
    dumps.push_back(slurp(dump));
    REQUIRE(dumps.back().size() == 512 * sizeof(float));
  }
  // Every MoE layer's expert FFNs (3 matrices per routed expert) went through the GEMM, then none.
  CHECK(js[0]["prefill_gemm"]["matmuls"].get<uint64_t>() >= 3);
  CHECK(js[1]["prefill_gemm"]["matmuls"] == js[0]["prefill_gemm"]["matmuls"]);
  CHECK(js[2]["prefill_gemm"]["matmuls"] == 0);
  CHECK(dumps[1] == dumps[0]);  // bit-identical with 1 and 2 threads
  std::vector<float> gemm(512), dot(512);
  std::memcpy(gemm.data(), dumps[0].data(), dumps[0].size());
  std::memcpy(dot.data(), dumps[2].data(), dumps[2].size());
  CHECK(dumps[2] != dumps[0]);  // another summation order: not the same bits
  // Same products in another f32 order; random-weight models amplify it through re-quantised
  // activations, so the bound is loose, but a wrong GEMM (transposed tile, wrong rows) is far outside it.
  double num = 0, den = 0, dd = 0;
  for (size_t i = 0; i < gemm.size(); ++i) {
    num += double(gemm[i]) * dot[i];
    den += double(gemm[i]) * gemm[i];
    dd += double(dot[i]) * dot[i];
  }
  const double cosine = num / std::sqrt(den * dd);
  MESSAGE("prefill GEMM vs ggml dot products: cosine of the last logits ", cosine);
  CHECK(cosine > 0.999);
}

TEST_CASE("run: logits are bit-identical whether batches take AMX tiles, the AVX-512 kernels or AVX2") {
  // The Q4_K model's projections see the whole prompt (>= 9 tokens): AMX on CPUs that have it.
  TempDir dir;
  const TinyDeepseek model;
  std::vector<std::string> dumps;
  for (const char* isa : {"", "MOETIER_ISA=avx512", "MOETIER_ISA=avx2"}) {
    CAPTURE(isa);
    const std::string dump = dir.file("logits-" + std::to_string(dumps.size()) + ".f32");
    std::vector<std::string> env;
    if (*isa) env.push_back(isa);
    run_json(dir, {"run", "-m", model.path, "-p", kPrompt, "-n", "1", "--temp", "0", "--gemm-min-batch", "0", "--json",
                   "--dump-logits", dump}, env);
    dumps.push_back(slurp(dump));
    REQUIRE(dumps.back().size() == 512 * sizeof(float));
  }
  CHECK(dumps[1] == dumps[0]);
  CHECK(dumps[2] == dumps[0]);
}

TEST_CASE("bench --json: tokens/s per test, and a roofline ratio per decode repetition") {
  TempDir dir;
  const RunResult r = run_cli(dir, {"bench", "-m", tiny().path, "-p", "0", "-n", "4", "-r", "2", "-t", "1",
                                    "--bw-mib", "64", "--json"});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const Json j = Json::parse(r.out);
  CHECK(j["schema"] == "moetier.bench/1");
  REQUIRE(j["tests"].size() == 1);
  const Json& tg = j["tests"][0];
  CHECK(tg["test"] == "tg4");
  CHECK(tg["samples"].size() == 2);
  CHECK(tg["tokens_per_s"].get<double>() > 0);
  REQUIRE(tg["ratio_to_roofline_per_rep"].size() == 2);
  REQUIRE(tg["read_bandwidth_gbps_per_rep"].size() == 2);
  const double bytes = tg["decode_bytes_per_token"].get<double>();
  CHECK(bytes > 0);
  for (int i = 0; i < 2; ++i) {  // ratio = tokens/s / (bandwidth / bytes per token), per repetition
    const double want = tg["samples"][i].get<double>() / (tg["read_bandwidth_gbps_per_rep"][i].get<double>() * 1e9 / bytes);
    CHECK(tg["ratio_to_roofline_per_rep"][i].get<double>() == doctest::Approx(want).epsilon(1e-9));
  }
  const RunResult p = run_cli(dir, {"bench", "-m", tiny().path, "-p", "8", "-n", "0", "-r", "1", "--no-roofline", "--json"});
  CAPTURE(p.err);
  REQUIRE(p.status == 0);
  const Json jp = Json::parse(p.out);
  REQUIRE(jp["tests"].size() == 1);
  CHECK(jp["tests"][0]["test"] == "pp8");
  CHECK(jp["tests"][0]["tokens_per_s"].get<double>() > 0);
}

TEST_CASE("bench --json: decode time split per repetition; where the weights live (--no-mmap)") {
  TempDir dir;
  for (const bool no_mmap : {false, true}) {
    CAPTURE(no_mmap);
    std::vector<std::string> args = {"bench", "-m", tiny().path, "-p", "0", "-n", "4", "-r", "2", "-t", "1",
                                     "--no-roofline", "--json"};
    if (no_mmap) args.push_back("--no-mmap");
    const RunResult r = run_cli(dir, args);
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    const Json j = Json::parse(r.out);
    CHECK(j["weights_memory"] == (no_mmap ? "anonymous" : "mmap"));
    const Json& split = j["tests"][0]["decode_time_split_per_rep"];
    REQUIRE(split.size() == 2);
    for (const Json& s : split) {
      const double e = s["experts"], a = s["attention"], rest = s["rest"];
      CHECK(e > 0.0);  // the tiny model's experts and attention do run in every decode step
      CHECK(a > 0.0);
      CHECK(e + a <= 1.0);
      CHECK(e + a + rest == doctest::Approx(1.0));
    }
  }
}

TEST_CASE("run --no-mmap: the same tokens and logits as the mapped file; refused with the tier options") {
  TempDir dir;
  std::vector<std::string> dumps;
  std::vector<Json> gens;
  for (const bool no_mmap : {false, true}) {
    const std::string dump = dir.file("logits-" + std::to_string(dumps.size()) + ".f32");
    std::vector<std::string> args = {"run", "-m", tiny().path, "-p", kPrompt, "-n", "6", "--temp", "0", "--json",
                                     "--dump-logits", dump};
    if (no_mmap) args.push_back("--no-mmap");
    gens.push_back(run_json(dir, args)["generated_tokens"]);
    dumps.push_back(slurp(dump));
  }
  REQUIRE(dumps[0].size() == 512 * sizeof(float));
  CHECK(dumps[1] == dumps[0]);
  CHECK(gens[1] == gens[0]);
  const RunResult r = run_cli(dir, {"run", "-m", tiny().path, "-p", kPrompt, "-n", "2", "--no-mmap", "--ram-budget", "1GiB"});
  check_one_line_error(r, {"--no-mmap", "--ram-budget"});
}

TEST_CASE("run: a prompt longer than the context is one error line and exit 1") {
  TempDir dir;
  const RunResult r = run_cli(dir, {"run", "-m", tiny().path, "-p", kPrompt, "-c", "4", "-n", "4", "--temp", "0"});
  check_one_line_error(r, {"prompt", "context", "4"});
  CHECK(r.out.empty());  // nothing generated, the prompt not echoed
}

TEST_CASE("run: missing, non-GGUF and unsupported-architecture model files (and a missing prompt file) are named") {
  TempDir dir;
  const std::string missing = dir.file("no-such-model.gguf");
  check_one_line_error(run_cli(dir, {"run", "-m", missing, "-p", "hi", "-n", "1"}), {missing});

  const std::string text = dir.file("not-a-model.gguf");
  spit(text, "this is a text file, not a GGUF model\n");
  check_one_line_error(run_cli(dir, {"run", "-m", text, "-p", "hi", "-n", "1"}), {text});

  const std::string no_prompt = dir.file("no-such-prompt.txt");
  check_one_line_error(run_cli(dir, {"run", "-m", tiny().path, "-f", no_prompt, "-n", "1"}), {no_prompt});

  // Rename the architecture everywhere (general.architecture and every "qwen3moe." key, same length).
  std::string bytes = slurp(tiny().path);
  size_t n_patched = 0;
  for (size_t at = bytes.find("qwen3moe"); at != std::string::npos; at = bytes.find("qwen3moe", at + 1), ++n_patched)
    bytes.replace(at, 8, "qwen9moe");
  REQUIRE(n_patched > 5);
  const std::string alien = dir.file("alien-arch.gguf");
  spit(alien, bytes);
  check_one_line_error(run_cli(dir, {"run", "-m", alien, "-p", "hi", "-n", "1"}), {alien, "qwen9moe", "architecture"});
}

TEST_CASE("run: invalid sampling options are rejected") {
  TempDir dir;
  const RunResult top_p = run_cli(dir, {"run", "-m", tiny().path, "-p", "hi", "-n", "1", "--top-p", "2"});
  check_one_line_error(top_p, {"top-p", "2"});
  CHECK(top_p.out.empty());  // rejected before the prompt is echoed
  // Checked before the model is opened: the missing model file is not what is reported.
  check_one_line_error(run_cli(dir, {"run", "-m", dir.file("absent.gguf"), "-p", "hi", "--top-p", "0"}), {"top-p"});
  check_one_line_error(run_cli(dir, {"run", "-m", tiny().path, "-p", "hi", "-n", "1", "--min-p", "-1"}), {"min-p"});
  check_one_line_error(run_cli(dir, {"run", "-m", tiny().path, "-p", "hi", "-n", "1", "--repeat-penalty", "0"}),
                       {"repeat-penalty"});
  // CLI-level mistakes (CLI11) are errors too.
  CHECK(run_cli(dir, {"run", "-p", "hi"}).status != 0);                                        // no -m
  CHECK(run_cli(dir, {"run", "-m", tiny().path, "-p", "hi", "-f", "x.txt"}).status != 0);      // -p and -f
  CHECK(run_cli(dir, {"run", "-m", tiny().path, "-p", "hi", "-n", "many"}).status != 0);       // not a number
}

TEST_CASE("run: greedy continuations of the reference models equal llama.cpp's" *
          doctest::skip(moetier::test::no_shared())) {
  TempDir dir;
  const auto shared = moetier::test::shared_dir();
  for (const std::string& stem : moetier::test::golden_stems()) {
    CAPTURE(stem);
    const Json golden = moetier::test::read_json(shared / "golden" / stem / "golden.json");
    const Json& p0 = golden["prompts"][0];
    REQUIRE(p0["index"] == 0);
    const Json j = run_json(dir, {"run", "-m", (shared / "models" / (stem + ".gguf")).string(), "-f",
                                  (shared / "golden" / "prompts" / "p0.txt").string(), "-n", "16", "--temp", "0",
                                  "-c", "512", "--ignore-eos", "--json"});
    CHECK(j["prompt_tokens"] == p0["tokens"]);
    CHECK(j["generated_tokens"] == p0["greedy_tokens"]);
  }
}
