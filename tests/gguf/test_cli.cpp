// The built `moetier` binary (path in env MOETIER_BIN, set by meson): synth writes deterministic
// files (through a temporary renamed onto -o, symbolic links kept), inspect reports them (text and JSON
// schema moetier.inspect/1), and every failure is one line "moetier: error: ..." on stderr with exit
// status 1: usage errors (--help exits 0) and a write error on stdout included.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "runtime/cli/inspect_report.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/synth/synth_model.hpp"
#include "tests/gguf/gguf_test_util.hpp"
#include "tests/shared_data.hpp"

using namespace moetier;
using Json = nlohmann::json;

namespace {

struct RunResult {
  int status = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// Runs `moetier ARGS` with stdout / stderr captured in files of `dir`.
RunResult run(const test::TempDir& dir, const std::vector<std::string>& args) {
  const char* bin = std::getenv("MOETIER_BIN");
  REQUIRE_MESSAGE(bin != nullptr, "MOETIER_BIN is not set (meson sets it to the built moetier)");
  std::string cmd = quote(bin);
  for (const auto& a : args) cmd.append(" ").append(quote(a));
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  cmd.append(" >").append(quote(out)).append(" 2>").append(quote(err)).append(" </dev/null");
  const int rc = std::system(cmd.c_str());
  RunResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

/// A failure is exactly one line on stderr starting with "moetier: error: ", and exit status 1.
void check_one_line_error(const RunResult& r, std::initializer_list<std::string_view> parts) {
  CHECK(r.status == 1);
  CHECK(r.err.rfind("moetier: error: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  test::check_msg(r.err, parts);
}

uint64_t sizes_sum(const Json& s) {
  uint64_t n = 0;
  for (const char* k : {"embedding", "output", "attention", "norm", "dense_ffn", "shared_experts", "routed_experts",
                        "router", "other", "nextn"})
    n += s[k].get<uint64_t>();
  return n;
}

}  // namespace

TEST_CASE("moetier synth writes a deterministic model that inspect reports") {
  test::TempDir dir("cli");
  const std::string a = dir.file("a.gguf"), b = dir.file("b.gguf");
  RunResult r = run(dir, {"synth", "--preset", "tiny-qwen3moe", "--type", "Q4_K", "--seed", "7", "-o", a});
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());  // no progress bar when stderr is not a terminal
  CHECK(r.out.find("tiny-qwen3moe") != std::string::npos);
  REQUIRE(run(dir, {"synth", "--preset", "tiny-qwen3moe", "--type", "q4_k", "--seed", "7", "-o", b}).status == 0);
  const std::string bytes_a = slurp(a);
  CHECK(bytes_a == slurp(b));
  CHECK(!std::filesystem::exists(a + ".partial"));

  r = run(dir, {"inspect", a, "--json"});
  REQUIRE(r.status == 0);
  const Json j = Json::parse(r.out);
  CHECK(j["schema"] == "moetier.inspect/1");
  CHECK(j["architecture"] == "qwen3moe");
  CHECK(j["architecture_supported"] == true);
  CHECK(j["gguf_version"] == 3);
  CHECK(j["file_type"] == 14);
  const auto model = gguf::GgufModel::open(a);
  CHECK(j["n_tensors"] == model.tensors().size());
  CHECK(j["sizes"]["total"] == model.total_tensor_bytes());
  CHECK(sizes_sum(j["sizes"]) == model.total_tensor_bytes());
  uint64_t type_bytes = 0;
  for (const auto& t : j["types"]) type_bytes += t["bytes"].get<uint64_t>();
  CHECK(type_bytes == model.total_tensor_bytes());
  CHECK(j["hparams"]["n_expert"] == 16);
  CHECK(j["hparams"]["n_expert_used"] == 4);
  CHECK(j["hparams"]["rope_type"] == "neox");
  CHECK(j["routed_experts"]["n_moe_layers"] == 2);
  CHECK(j["decode"]["n_expert_used"] == 4);
  CHECK(j["decode"]["bytes_per_token"].get<uint64_t>() < j["sizes"]["total"].get<uint64_t>());
  // f32 cache: 2 layers x 2 KV heads x (32 + 32) x 4 bytes.
  CHECK(j["kv_cache"]["f32_bytes_per_token"] == 2 * 2 * 64 * 4);
  CHECK(j["kv_cache"]["f16_bytes_per_token"] == 2 * 2 * 64 * 2);

  r = run(dir, {"inspect", a});
  REQUIRE(r.status == 0);
  for (const char* s : {"qwen3moe", "hyper-parameters", "routed experts", "MiB", "decode bytes per token",
                        "one row", "KV cache per token"})
    CHECK_MESSAGE(r.out.find(s) != std::string::npos, "inspect text lacks " << s);
}

TEST_CASE("moetier errors are one line on stderr with exit status 1") {
  test::TempDir dir("cli-err");
  check_one_line_error(run(dir, {"inspect", dir.file("missing.gguf")}), {"missing.gguf", "cannot open"});
  {
    std::ofstream(dir.file("junk.gguf")) << "this is not a gguf file";
    check_one_line_error(run(dir, {"inspect", dir.file("junk.gguf")}), {"junk.gguf", "bad magic"});
  }
  check_one_line_error(run(dir, {"synth", "--preset", "nope", "-o", dir.file("x.gguf")}), {"unknown synth preset"});
  check_one_line_error(run(dir, {"synth", "--preset", "tiny-mixtral", "--type", "Q2_K", "-o", dir.file("x.gguf")}),
                       {"cannot write Q2_K"});
  check_one_line_error(run(dir, {"synth", "--preset", "tiny-mixtral"}), {"-o OUT.gguf is required"});
  check_one_line_error(run(dir, {"synth", "--preset", "tiny-mixtral", "-o", dir.file("no/such/dir/x.gguf")}),
                       {"no/such/dir/x.gguf"});
  CHECK(!std::filesystem::exists(dir.file("x.gguf")));
  CHECK(run(dir, {"frobnicate"}).status != 0);
}

TEST_CASE("inspect reports an unknown architecture by name") {
  test::TempDir dir("cli-arch");
  gguf::GgufWriter w;
  w.set_string("general.architecture", "mamba");
  w.set_u32("mamba.block_count", 1);
  w.add_tensor("token_embd.weight", GgmlType::F32, {10, 8});
  w.add_tensor("blk.0.ssm_in.weight", GgmlType::F32, {16, 8});
  const std::string path = dir.file("mamba.gguf");
  w.write(path, test::pattern_fill);
  RunResult r = run(dir, {"inspect", path, "--json"});
  REQUIRE(r.status == 0);
  const Json j = Json::parse(r.out);
  CHECK(j["architecture"] == "mamba");
  CHECK(j["architecture_supported"] == false);
  CHECK(j["architecture_note"] == "architecture mamba is not supported for run");
  CHECK(j["hparams"].is_null());
  CHECK(j["kv_cache"].is_null());
  CHECK(j["sizes"]["other"] == 16 * 8 * 4);
  CHECK(j["sizes"]["embedding"] == 10 * 8 * 4);
  r = run(dir, {"inspect", path});
  REQUIRE(r.status == 0);
  CHECK(r.out.find("not supported for run") != std::string::npos);
}

TEST_CASE("synth --dry-run reports full-size presets without writing") {
  test::TempDir dir("cli-dry");
  const RunResult r = run(dir, {"synth", "--preset", "deepseek-v3", "--type", "Q4_K", "--dry-run", "--json"});
  REQUIRE(r.status == 0);
  const Json j = Json::parse(r.out);
  CHECK(j["gguf_version"].is_null());
  const double gb = static_cast<double>(j["sizes"]["total"].get<uint64_t>()) / 1e9;
  CHECK(gb > 369.0);
  CHECK(gb < 391.0);
  CHECK(j["routed_experts"]["n_moe_layers"] == 58);
  CHECK(j["kv_cache"]["f16_bytes_per_token"] == 61 * (512 + 64) * 2);
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))  // nothing but the captured output
    CHECK(e.path().extension() == ".txt");
  CHECK(run(dir, {"synth", "--list-presets"}).out.find("deepseek-r1") != std::string::npos);
}

TEST_CASE("inspect on ../shared models gives README.md's numbers" * doctest::skip(test::no_shared())) {
  test::TempDir dir("cli-shared");
  const RunResult r =
      run(dir, {"inspect", (test::shared_dir() / "models" / "mixtral-tiny-f32.gguf").string(), "--json"});
  REQUIRE(r.status == 0);
  const Json j = Json::parse(r.out);
  CHECK(j["architecture"] == "llama");
  CHECK(j["n_tensors"] == 33);
  CHECK(j["sizes"]["routed_experts"] == 3 * 3 * 524288);
  CHECK(j["routed_experts"]["layers"][1]["bytes_per_expert"] == 3 * 524288 / 8);
  CHECK(j["hparams"]["n_head_kv"] == 1);
  CHECK(j["kv_cache"]["f32_bytes_per_token"] == 3 * 1 * (16 + 16) * 4);
  CHECK(j["types"].size() == 1);
  CHECK(j["decode"]["tied_output"] == false);
  CHECK(j["decode"]["embedding_row_bytes"] == 64 * 4);
  const uint64_t total = j["sizes"]["total"];
  CHECK(j["decode"]["bytes_per_token"] == total - 3 * 3 * 524288 - 32000ull * 64 * 4 + 256 + 3 * 2 * 196608);
}

TEST_CASE("inspect_report and inspect_text agree (library, every tiny preset)") {
  for (const auto& p : synth::all_presets()) {
    if (!p.tiny) continue;
    CAPTURE(p.name);
    const auto m = synth::build_synth_model({p.name, GgmlType::Q4_K, "", 0});
    const gguf::Metadata md = m.metadata_map();
    const auto tensors = m.tensor_infos();
    cli::InspectInput in;
    in.file = p.name + ".gguf";
    in.metadata = &md;
    in.tensors = &tensors;
    const auto r = cli::inspect_report(in);
    CHECK(r["schema"] == "moetier.inspect/1");
    CHECK(r["architecture"] == p.arch);
    CHECK(r["sizes"]["total"] == m.tensor_bytes());
    CHECK(sizes_sum(Json::parse(r["sizes"].dump())) == m.tensor_bytes());
    CHECK(r["hparams"]["n_layer"] == p.n_layer);
    CHECK(r["routed_experts"]["n_moe_layers"] == p.n_layer - p.n_layer_dense_lead);
    const std::string text = cli::inspect_text(r);
    CHECK(text.find(p.arch) != std::string::npos);
    CHECK(text.find(fmt::format("({} bytes)", m.tensor_bytes())) != std::string::npos);
    CHECK(text.find(fmt::format("layers {}-{}", p.n_layer_dense_lead, p.n_layer - 1)) != std::string::npos);
  }
}

TEST_CASE("usage errors are one line on stderr and exit status 1; --help prints the help and exits 0") {
  test::TempDir dir("cli-usage");
  // CLI11 used to exit 104-114 with two lines ("... Run with --help for more information.").
  const std::vector<std::vector<std::string>> usage_errors = {
      {},                                                  // no subcommand
      {"frobnicate"},                                      // unknown subcommand
      {"inspect"},                                         // missing positional
      {"inspect", "a.gguf", "b.gguf"},                     // extra positional
      {"synth", "--bogus"},                                // unknown option
      {"synth", "--seed", "many"},                         // not a number
      {"run", "-p", "hi"},                                 // missing -m
      {"run", "-m", "x.gguf", "-p", "hi", "-f", "x.txt"},  // -p excludes -f
      {"run", "-m", "x.gguf", "-p", "hi", "-n"},           // missing value
      {"run", "-m", "x.gguf", "-p", "hi", "--temp", "0", "--temp", "1"},  // given twice
      {"bench", "-m", "x.gguf", "-r", "0"},                // out of range
      {"plan", "-m", "x.gguf", "--ram-budget", "1GiB", "--experts-on-nvme", "all"},  // exclusive
  };
  for (const auto& args : usage_errors) {
    std::string cmd;
    for (const auto& a : args) cmd += " " + a;
    CAPTURE(cmd);
    const RunResult r = run(dir, args);
    check_one_line_error(r, {"--help"});
    CHECK(r.out.empty());
  }
  for (const std::vector<std::string>& args : {std::vector<std::string>{"--help"}, {"run", "--help"}, {"synth", "-h"}}) {
    CAPTURE(args.back());
    const RunResult r = run(dir, args);
    CHECK(r.status == 0);
    CHECK(r.err.empty());
    CHECK(r.out.find("Usage:") != std::string::npos);
  }
}

TEST_CASE("a write error on stdout (full disk) is exit 1 with one line: inspect, synth --list-presets, --help") {
  if (!std::filesystem::exists("/dev/full")) {
    MESSAGE("no /dev/full on this machine: nothing to check");
    return;
  }
  test::TempDir dir("cli-full");
  const std::string model = dir.file("m.gguf");
  REQUIRE(run(dir, {"synth", "--preset", "tiny-olmoe", "-o", model}).status == 0);
  const char* bin = std::getenv("MOETIER_BIN");
  REQUIRE(bin != nullptr);
  const std::vector<std::vector<std::string>> commands = {
      {"inspect", model}, {"inspect", model, "--json"}, {"synth", "--list-presets"},
      {"synth", "--preset", "tiny-olmoe", "--dry-run"}, {"synth", "--preset", "tiny-olmoe", "-o", dir.file("n.gguf")},
      {"--help"}};
  for (const auto& args : commands) {
    std::string cmd = quote(bin);
    for (const auto& a : args) cmd.append(" ").append(quote(a));
    CAPTURE(cmd);
    const std::string err = dir.file("stderr.txt");
    const int rc = std::system((cmd + " >/dev/full 2>" + quote(err)).c_str());
    RunResult r;
    r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    r.err = slurp(err);
    CAPTURE(r.err);
    check_one_line_error(r, {"standard output"});
  }
}

TEST_CASE("synth -o: a symbolic link keeps pointing at the replaced model; an interrupted write keeps the old one") {
  test::TempDir dir("cli-link");
  const std::string target = dir.file("real.gguf"), link = dir.file("link.gguf");
  REQUIRE(run(dir, {"synth", "--preset", "tiny-olmoe", "--seed", "1", "-o", target}).status == 0);
  std::filesystem::create_symlink("real.gguf", link);
  REQUIRE(run(dir, {"synth", "--preset", "tiny-olmoe", "--seed", "2", "-o", link}).status == 0);
  CHECK(std::filesystem::is_symlink(link));
  REQUIRE(run(dir, {"synth", "--preset", "tiny-olmoe", "--seed", "2", "-o", dir.file("direct.gguf")}).status == 0);
  CHECK(slurp(target) == slurp(dir.file("direct.gguf")));
  // A failing synth (bad --vocab-from) leaves the existing file as it was.
  const std::string before = slurp(target);
  check_one_line_error(run(dir, {"synth", "--preset", "tiny-olmoe", "--vocab-from", dir.file("none.gguf"), "-o", target}),
                       {"none.gguf"});
  CHECK(slurp(target) == before);
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))  // no temporaries left behind
    CHECK(e.path().filename().string().find(".moetier-") == std::string::npos);
}

namespace {

/// Names in `dir` that look like OutputFile temporaries of `name` (".NAME.moetier-XXXXXX").
std::vector<std::string> temporaries_of(const std::filesystem::path& dir, const std::string& name) {
  std::vector<std::string> found;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().filename().string().rfind("." + name + ".moetier-", 0) == 0) found.push_back(e.path().filename().string());
  return found;
}

}  // namespace

TEST_CASE("synth -o interrupted by a signal removes its temporary and dies of that signal" *
          doctest::skip(test::no_shared())) {
  const char* bin = std::getenv("MOETIER_BIN");
  REQUIRE(bin != nullptr);
  const std::string vocab = (test::shared_dir() / "models" / "qwen3moe-tiny-q8_0.gguf").string();
  int interrupted = 0;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    CAPTURE(sig);
    for (int attempt = 0; attempt < 3; ++attempt) {  // a write that finishes before the signal proves nothing: again
      test::TempDir dir("cli-signal");
      const std::string out = (dir.path() / "big.gguf").string();
      const pid_t pid = ::fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        const int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, 0);
        ::dup2(null, 1);
        ::dup2(null, 2);
        ::execl(bin, bin, "synth", "--preset", "tiny-mixtral", "--vocab-from", vocab.c_str(), "-o", out.c_str(),
                static_cast<char*>(nullptr));
        ::_exit(127);
      }
      // Poll until the temporary appears (the model is being written), then send the signal.
      bool seen = false;
      int status = 0;
      bool exited = false;
      const auto t0 = std::chrono::steady_clock::now();
      while (!seen && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
        if (::waitpid(pid, &status, WNOHANG) == pid) {
          exited = true;
          break;
        }
        seen = !temporaries_of(dir.path(), "big.gguf").empty();
        if (!seen) std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      if (!exited) {
        ::kill(pid, sig);
        REQUIRE(::waitpid(pid, &status, 0) == pid);
      }
      REQUIRE(seen);
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;  // finished first
      CHECK(WIFSIGNALED(status));
      CHECK(WTERMSIG(status) == sig);  // the default action: exit status 128 + N in a shell
      CHECK(temporaries_of(dir.path(), "big.gguf").empty());
      CHECK(!std::filesystem::exists(out));
      ++interrupted;
      break;
    }
  }
  CHECK(interrupted == 3);
}

TEST_CASE("JSON outputs replace invalid UTF-8 from paths and metadata with U+FFFD instead of failing") {
  test::TempDir dir("cli-utf8");
  const std::string bad = "m\xff\xfe";
  const std::string model = dir.file(bad + ".gguf");
  REQUIRE(run(dir, {"synth", "--preset", "tiny-qwen3moe", "-o", model}).status == 0);
  const std::string replacement = "\xef\xbf\xbd";  // U+FFFD
  {
    const RunResult r = run(dir, {"inspect", model, "--json"});
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    CHECK(Json::parse(r.out)["file"].get<std::string>().find(replacement) != std::string::npos);
  }
  {
    const RunResult r = run(dir, {"bench", "-m", model, "-p", "0", "-n", "1", "-r", "1", "--no-roofline", "--json"});
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    CHECK(Json::parse(r.out)["model"].get<std::string>().find(replacement) != std::string::npos);
  }
  {
    const std::string plan = dir.file("plan.json");
    const RunResult r = run(dir, {"plan", "-m", model, "--ram-budget", "100MiB", "--dram-gbps", "1", "-o", plan});
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    CHECK(Json::parse(slurp(plan))["model"]["file"].get<std::string>().find(replacement) != std::string::npos);
  }
  // Strings from the file: general.name and general.architecture with bytes that are not UTF-8.
  gguf::GgufWriter w;
  w.set_string("general.architecture", "mam\xff" "ba");
  w.set_string("general.name", "na\xc3me");
  w.add_tensor("token_embd.weight", GgmlType::F32, {10, 8});
  const std::string path = dir.file("bad-strings.gguf");
  w.write(path, test::pattern_fill);
  const RunResult r = run(dir, {"inspect", path, "--json"});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const Json j = Json::parse(r.out);
  CHECK(j["architecture"] == "mam" + replacement + "ba");
  CHECK(r.out.find("na" + replacement + "me") != std::string::npos);
}

TEST_CASE("control characters from a file are escaped: errors stay one line, inspect prints no escapes") {
  test::TempDir dir("cli-ctrl");
  const std::string evil = "\n\x1b[2J";
  const auto no_controls = [](const std::string& text) {  // apart from the line ends
    return std::none_of(text.begin(), text.end(), [](char c) {
      const auto u = static_cast<unsigned char>(c);
      return (u < 0x20 && u != '\n') || u == 0x7f;
    });
  };
  // general.architecture and general.name: inspect's text report and run's error.
  {
    gguf::GgufWriter w;
    w.set_string("general.architecture", "mam" + evil + "ba");
    w.set_string("general.name", "na" + evil + "me");
    w.add_tensor("token_embd.weight", GgmlType::F32, {10, 8});
    const std::string path = dir.file("arch.gguf");
    w.write(path, test::pattern_fill);
    const RunResult r = run(dir, {"inspect", path});
    REQUIRE(r.status == 0);
    CHECK(no_controls(r.out));
    CHECK(r.out.find("mam\\n\\x1b[2Jba") != std::string::npos);
    CHECK(r.out.find("na\\n\\x1b[2Jme") != std::string::npos);
    const RunResult e = run(dir, {"run", "-m", path, "-p", "hi", "-n", "1"});
    check_one_line_error(e, {"mam\\n\\x1b[2Jba"});
    CHECK(no_controls(e.err));
  }
  // A tensor name (two equal names: the reader names the duplicate).
  {
    gguf::GgufWriter w;
    w.set_string("general.architecture", "mamba");
    w.add_tensor("t" + evil + "a", GgmlType::F32, {4});
    w.add_tensor("t" + evil + "b", GgmlType::F32, {4});
    const std::string path = dir.file("tensor.gguf");
    w.write(path, test::pattern_fill);
    std::string bytes = slurp(path);
    const size_t at = bytes.find("t" + evil + "b");
    REQUIRE(at != std::string::npos);
    bytes[at + 1 + evil.size()] = 'a';
    std::ofstream(path, std::ios::binary) << bytes;
    for (const auto& args : std::vector<std::vector<std::string>>{{"inspect", path}, {"run", "-m", path, "-p", "hi"}}) {
      const RunResult e = run(dir, args);
      check_one_line_error(e, {"t\\n\\x1b[2Ja"});
      CHECK(no_controls(e.err));
    }
  }
  // tokenizer.ggml.model of a tiny model ("gpt2" -> 4 bytes with controls).
  {
    const std::string path = dir.file("tok.gguf");
    REQUIRE(run(dir, {"synth", "--preset", "tiny-qwen3moe", "-o", path}).status == 0);
    std::string bytes = slurp(path);
    const size_t key = bytes.find("tokenizer.ggml.model");
    REQUIRE(key != std::string::npos);
    const size_t at = bytes.find("gpt2", key);
    REQUIRE(at != std::string::npos);
    bytes.replace(at, 4, "\n\x1b[J");
    std::ofstream(path, std::ios::binary) << bytes;
    const RunResult e = run(dir, {"run", "-m", path, "-p", "hi", "-n", "1"});
    check_one_line_error(e, {"\\n\\x1b[J"});
    CHECK(no_controls(e.err));
  }
}
