// `moetier run / bench / plan` options and files, through the built binary (MOETIER_BIN): inputs that are
// not regular files (FIFO, folder) are refused at once instead of hanging or reading nothing; outputs are
// never written over a FIFO or folder, and replace regular files whole; a full stdout is an error; numbers
// out of range, tier options without (or with the wrong) tier and bad --cache-size forms are one-line usage
// errors with exit status 1; -c is checked against memory and the training context; --repeat-last-n -1
// is the context size. Every run has a timeout, so a regression that blocks fails instead of hanging.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/run_util.hpp"

using Json = nlohmann::json;
using namespace moetier;

namespace {

using test::RunResult;
using test::slurp;
using test::spit;
using test::TempDir;

/// `moetier ARGS`, killed after 30 s (status 137 then, so a blocked open fails the test instead of
/// hanging it), stdout to `stdout_path` ("" = a captured file), stderr captured.
/// `shell_prefix` (e.g. "ulimit -v N; ") runs first in the same shell.
RunResult run_with_timeout(const TempDir& dir, const std::vector<std::string>& args, const std::string& stdout_path,
                           const std::string& shell_prefix = "") {
  const char* bin = std::getenv("MOETIER_BIN");
  REQUIRE_MESSAGE(bin != nullptr, "MOETIER_BIN is not set (meson sets it to the built moetier)");
  std::string cmd = shell_prefix;
  cmd.append("timeout -s KILL 30 ");
  cmd.append(test::shell_quote(bin));
  for (const auto& a : args) cmd.append(" ").append(test::shell_quote(a));
  const std::string out = stdout_path.empty() ? dir.file("stdout.txt") : stdout_path, err = dir.file("stderr.txt");
  cmd.append(" >").append(test::shell_quote(out)).append(" 2>").append(test::shell_quote(err)).append(" </dev/null");
  const int rc = std::system(cmd.c_str());
  RunResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  if (stdout_path.empty()) r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

RunResult run_timed(const TempDir& dir, const std::vector<std::string>& args) { return run_with_timeout(dir, args, ""); }

/// `moetier ARGS >/dev/full`.
RunResult run_to_full_disk(const TempDir& dir, const std::vector<std::string>& args) {
  return run_with_timeout(dir, args, "/dev/full");
}

using test::check_one_line_error;

std::string joined(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += (s.empty() ? "" : " ") + (a.empty() ? std::string("''") : a);
  return s;
}

bool is_fifo(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode);
}

std::vector<std::string> names_in(const std::string& folder) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(folder)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

/// One synthesized tiny-qwen3moe (Q4_K) for this file's tests.
const std::string& tiny_model() {
  static TempDir dir;
  static const std::string path = [] {
    const std::string p = dir.file("tiny-qwen3moe.gguf");
    const RunResult r = run_timed(dir, {"synth", "--preset", "tiny-qwen3moe", "--type", "Q4_K", "-o", p});
    if (r.status != 0) FAIL("moetier synth failed: " << r.err);
    return p;
  }();
  return path;
}

std::vector<std::string> run_args(std::vector<std::string> extra) {
  std::vector<std::string> a = {"run", "-m", tiny_model(), "-p", "hello", "-n", "1", "--temp", "0"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

}  // namespace

TEST_CASE("inputs that are not regular files (FIFO, folder) are one error line at once, not a hang") {
  TempDir dir;
  const std::string fifo = dir.file("pipe"), folder = dir.file("folder");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::filesystem::create_directory(folder);
  const std::string& m = tiny_model();
  struct Case {
    std::vector<std::string> args;
    std::string path, kind;
  };
  const std::vector<Case> cases = {
      {{"run", "-m", fifo, "-p", "hi", "-n", "1"}, fifo, "FIFO"},
      {{"run", "-m", folder, "-p", "hi", "-n", "1"}, folder, "directory"},
      {{"run", "-m", m, "-f", fifo, "-n", "1"}, fifo, "FIFO"},
      {{"run", "-m", m, "-f", folder, "-n", "1"}, folder, "directory"},  // was read as an empty prompt
      {{"run", "-m", m, "-p", "hi", "-n", "1", "--plan", fifo}, fifo, "FIFO"},
      {{"run", "-m", m, "-p", "hi", "-n", "1", "--ram-budget", "100MiB", "--trace", fifo}, fifo, "FIFO"},
      {{"plan", "-m", m, "--ram-budget", "100MiB", "--trace", fifo, "--dram-gbps", "1"}, fifo, "FIFO"},
      {{"bench", "-m", fifo, "-p", "0", "-n", "1", "-r", "1", "--no-roofline"}, fifo, "FIFO"},
      {{"inspect", fifo}, fifo, "FIFO"},
      {{"synth", "--preset", "tiny-qwen3moe", "--vocab-from", fifo, "-o", dir.file("x.gguf")}, fifo, "FIFO"},
  };
  for (const Case& c : cases) {
    const std::string cmd = joined(c.args);
    CAPTURE(cmd);
    const RunResult r = run_timed(dir, c.args);
    check_one_line_error(r, {c.path, c.kind});
    CHECK(r.out.empty());
  }
  CHECK(!std::filesystem::exists(dir.file("x.gguf")));
}

TEST_CASE("outputs: a FIFO or a folder is refused and left as it was; a regular file is replaced whole") {
  TempDir dir;
  const std::string& m = tiny_model();
  // Each writer, given its target.
  const std::vector<std::pair<std::string, std::function<std::vector<std::string>(const std::string&)>>> writers = {
      {"--dump-logits", [](const std::string& t) { return run_args({"--dump-logits", t}); }},
      {"--record-routing", [](const std::string& t) { return run_args({"--record-routing", t}); }},
      {"--save-plan", [](const std::string& t) { return run_args({"--ram-budget", "100MiB", "--save-plan", t}); }},
      {"plan -o", [&](const std::string& t) {
         return std::vector<std::string>{"plan", "-m", m, "--ram-budget", "100MiB", "-o", t, "--dram-gbps", "1"};
       }},
      {"synth -o", [](const std::string& t) {
         return std::vector<std::string>{"synth", "--preset", "tiny-qwen3moe", "-o", t};
       }},
  };
  for (const auto& [name, args] : writers) {
    CAPTURE(name);
    const std::string folder = dir.file("out");
    std::filesystem::remove_all(folder);
    std::filesystem::create_directory(folder);
    const std::string fifo = folder + "/pipe", sub = folder + "/sub", file = folder + "/file";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    std::filesystem::create_directory(sub);
    check_one_line_error(run_timed(dir, args(fifo)), {fifo, "FIFO"});
    CHECK(is_fifo(fifo));
    check_one_line_error(run_timed(dir, args(sub)), {sub, "directory"});
    CHECK(std::filesystem::is_directory(sub));
    CHECK(std::filesystem::is_empty(sub));
    // A regular file is replaced (its mode kept), and no temporary is left beside it.
    spit(file, "old contents");
    REQUIRE(::chmod(file.c_str(), 0640) == 0);
    const RunResult ok = run_timed(dir, args(file));
    CAPTURE(ok.err);
    CHECK(ok.status == 0);
    const std::string bytes = slurp(file);
    CHECK(bytes.size() > 12);
    CHECK(bytes.find("old contents") == std::string::npos);
    struct stat st {};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0640);
    CHECK(names_in(folder) == std::vector<std::string>{"file", "pipe", "sub"});
  }
}

TEST_CASE("an output naming an input or another output is refused before anything is written") {
  TempDir dir;
  const std::string model_bytes = slurp(tiny_model());
  const std::string m = dir.file("m.gguf"), prompt = dir.file("prompt.txt"), plan = dir.file("plan.json"),
                    trace = dir.file("trace.jsonl"), link = dir.file("link.gguf"), fresh = dir.file("x.bin");
  const std::string fresh_again = dir.file(".") + "/x.bin";  // same absent file, spelled differently
  struct Case {
    std::vector<std::string> args;
    std::string out_option, in_option;
  };
  const std::vector<Case> cases = {
      {{"run", "-m", m, "-p", "hi", "-n", "1", "--dump-logits", m}, "--dump-logits", "-m"},
      {{"run", "-m", m, "-p", "hi", "-n", "1", "--record-routing", m}, "--record-routing", "-m"},
      {{"run", "-m", m, "-p", "hi", "-n", "1", "--dump-logits", link}, "--dump-logits", "-m"},
      {{"run", "-m", m, "-p", "hi", "-n", "1", "--ram-budget", "100MiB", "--save-plan", m}, "--save-plan", "-m"},
      {{"run", "-m", m, "-f", prompt, "-n", "1", "--dump-logits", prompt}, "--dump-logits", "-f"},
      {{"run", "-m", m, "-p", "hi", "-n", "1", "--plan", plan, "--save-plan", plan}, "--save-plan", "--plan"},
      {{"run", "-m", m, "-p", "hi", "-n", "1", "--ram-budget", "100MiB", "--trace", trace, "--save-plan", trace},
       "--save-plan", "--trace"},
      {{"run", "-m", m, "-p", "hi", "-n", "1", "--dump-logits", fresh, "--record-routing", fresh_again},
       "--record-routing", "--dump-logits"},
      {{"plan", "-m", m, "--ram-budget", "100MiB", "--dram-gbps", "1", "-o", m}, "-o", "-m"},
      {{"plan", "-m", m, "--ram-budget", "100MiB", "--dram-gbps", "1", "--trace", trace, "-o", trace}, "-o", "--trace"},
      {{"synth", "--preset", "tiny-qwen3moe", "--vocab-from", m, "-o", m}, "-o", "--vocab-from"},
  };
  for (const Case& c : cases) {
    const std::string cmd = joined(c.args);
    CAPTURE(cmd);
    spit(m, model_bytes);
    spit(prompt, "hello");
    spit(plan, "{}");
    spit(trace, "{\"layer\":0,\"pos\":0,\"experts\":[1,2,3,4],\"weights\":[0.25,0.25,0.25,0.25]}\n");
    std::filesystem::remove(link);
    std::filesystem::create_symlink(m, link);
    std::filesystem::remove(fresh);
    const RunResult r = run_timed(dir, c.args);
    check_one_line_error(r, {c.out_option + " ", c.in_option + " ", "same file"});
    CHECK(r.out.empty());
    CHECK(slurp(m) == model_bytes);
    CHECK(slurp(prompt) == "hello");
    CHECK(slurp(plan) == "{}");
    CHECK(!std::filesystem::exists(fresh));
  }
}

TEST_CASE("a write error on stdout (full disk) is exit 1 with one line, for every command that prints") {
  if (!std::filesystem::exists("/dev/full")) {
    MESSAGE("no /dev/full on this machine: nothing to check");
    return;
  }
  TempDir dir;
  const std::string& m = tiny_model();
  const std::vector<std::vector<std::string>> commands = {
      run_args({}),
      run_args({"--json"}),
      run_args({"--no-display-prompt"}),
      {"plan", "-m", m, "--ram-budget", "100MiB", "--dram-gbps", "1"},
      {"plan", "-m", m, "--ram-budget", "100MiB", "--dram-gbps", "1", "--json"},
      {"bench", "-m", m, "-p", "0", "-n", "1", "-r", "1", "--no-roofline", "--json"},
      {"bench", "-m", m, "-p", "0", "-n", "1", "-r", "1", "--no-roofline"},
  };
  for (const auto& args : commands) {
    const std::string cmd = joined(args);
    CAPTURE(cmd);
    check_one_line_error(run_to_full_disk(dir, args), {"standard output"});
  }
}

TEST_CASE("numbers out of range are one usage-error line naming the option, before anything runs") {
  TempDir dir;
  const std::string& m = tiny_model();
  const auto bench = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = {"bench", "-m", m, "-r", "1", "--no-roofline"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  struct Case {
    std::vector<std::string> args;
    std::string option;
  };
  const std::vector<Case> cases = {
      {run_args({"-n", "-2"}), "--n-predict"},  // only -1 means "until end of generation or a full context"
      {run_args({"-n", "-3"}), "--n-predict"},
      {run_args({"-c", "-1"}), "--ctx-size"},
      {run_args({"-c", "3000000000"}), "--ctx-size"},
      {run_args({"-t", "-1"}), "--threads"},
      {run_args({"--top-k", "-5"}), "--top-k"},
      {run_args({"--temp", "nan"}), "--temp"},
      {run_args({"--temp", "inf"}), "--temp"},
      {run_args({"--repeat-penalty", "inf"}), "--repeat-penalty"},
      {run_args({"--temp", "1e39"}), "--temp"},  // finite as long double, inf as the float option
      {run_args({"--repeat-penalty", "1e39"}), "--repeat-penalty"},
      {bench({"-p", "0", "-n", "1", "--bw-mib", "0"}), "--bw-mib"},
      {bench({"-p", "0", "-n", "1", "--bw-mib", "1048576"}), "--bw-mib"},  // was "out of memory" naming nothing
      {run_args({"--repeat-last-n", "-5"}), "--repeat-last-n"},
      {run_args({"--seed", "-2"}), "--seed"},
      {run_args({"--gemm-min-batch", "-1"}), "--gemm-min-batch"},
      {run_args({"--experts-on-nvme", "all", "--io-queue-depth", "0"}), "--io-queue-depth"},
      {run_args({"--experts-on-nvme", "all", "--io-queue-depth", "5000"}), "--io-queue-depth"},
      {bench({"-p", "-5", "-n", "1"}), "--n-prompt"},  // used to skip the prompt test silently
      {bench({"-p", "0", "-n", "-1"}), "--n-gen"},
      {bench({"-p", "0", "-n", "1", "-r", "0"}), "--repetitions"},
      {bench({"-p", "0", "-n", "1", "-t", "-2"}), "--threads"},
      {bench({"-p", "0", "-n", "0"}), "nothing to measure"},
      {{"plan", "-m", m, "--ram-budget", "100MiB", "--nvme-gbps", "-0.5"}, "--nvme-gbps"},
      {{"plan", "-m", m, "--ram-budget", "100MiB", "--dram-gbps", "-1"}, "--dram-gbps"},
      {{"synth", "--preset", "tiny-qwen3moe", "--seed", "-1", "-o", dir.file("x.gguf")}, "--seed"},
  };
  for (const Case& c : cases) {
    const std::string cmd = joined(c.args);
    CAPTURE(cmd);
    const RunResult r = run_timed(dir, c.args);
    check_one_line_error(r, {c.option});
    CHECK(r.out.empty());
  }
  CHECK(!std::filesystem::exists(dir.file("x.gguf")));
  // --bw-mib within its range but more than the memory allows: refused before the model is opened.
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  uint64_t kib = 0;
  while (meminfo >> key >> kib >> unit && key != "MemAvailable:") {
  }
  if (key == "MemAvailable:" && kib < (120ull << 20)) {  // 64 GiB is more than half of what is available
    const RunResult r = run_timed(dir, {"bench", "-m", m, "-r", "1", "-p", "0", "-n", "1", "--bw-mib", "65536"});
    check_one_line_error(r, {"--bw-mib 65536", "64.0 GiB", "available"});
  } else {
    MESSAGE("over 120 GiB of memory available: --bw-mib 65536 fits, nothing to refuse");
  }
}

TEST_CASE("numbers at the edge of a range: compared in the option's type, and a subnormal --temp is greedy") {
  TempDir dir;
  const std::string& m = tiny_model();
  // 0.001 is a valid --nvme-gbps (0: the machine profile's rate): the double the user typed meets the double bound.
  const RunResult plan = run_timed(dir, {"plan", "-m", m, "--ram-budget", "100MiB", "--dram-gbps", "1", "--nvme-gbps", "0.001"});
  CAPTURE(plan.err);
  CHECK(plan.status == 0);
  const auto tokens = [&](const std::string& temp) {
    const RunResult r = run_timed(
        dir, {"run", "-m", m, "-p", "hello", "--temp", temp, "-n", "8", "--ignore-eos", "--seed", "3", "--json"});
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    return Json::parse(r.out)["generated_tokens"].get<std::vector<int32_t>>();
  };
  const auto greedy = tokens("0");
  REQUIRE(greedy.size() == 8);
  for (const std::string t : {"1e-45", "1e-40", "1e-38"}) {  // logits / temp used to overflow to inf and pick a wrong token
    CAPTURE(t);
    CHECK(tokens(t) == greedy);
  }
}

TEST_CASE("a prompt too long for the context in bytes is refused before it is tokenised") {
  TempDir dir;
  const std::string& m = tiny_model();
  std::string big;
  while (big.size() < (4u << 20)) big += "hello world ";
  const std::string file = dir.file("big.txt");
  spit(file, big);
  const RunResult r = run_timed(dir, {"run", "-m", m, "-f", file, "-c", "64", "-n", "1"});
  check_one_line_error(r, {"prompt is " + std::to_string(big.size()) + " bytes", "64 tokens", "longest token"});
  CHECK(r.out.empty());
  // A prompt that might fit in bytes is tokenised and measured in tokens as before.
  spit(file, big.substr(0, 600));  // 50 words: more than 64 tokens, less than 64 x the longest token
  check_one_line_error(run_timed(dir, {"run", "-m", m, "-f", file, "-c", "64", "-n", "1", "--no-display-prompt"}),
                       {"tokens, longer than the context of 64"});
}

TEST_CASE("-c: a KV cache larger than memory is one line with its size; above the training context warns") {
  TempDir dir;
  const std::string& m = tiny_model();
  // 2e9 tokens x 1 KiB per token (tiny-qwen3moe: 2 layers x 2 KV heads x (32 + 32) x 4 bytes).
  check_one_line_error(run_timed(dir, run_args({"-c", "2000000000"})), {"KV cache", "-c 2000000000", "1.00 KiB per token"});
  check_one_line_error(run_timed(dir, {"bench", "-m", m, "-p", "0", "-n", "2000000000", "-r", "1", "--no-roofline"}),
                       {"KV cache", "bench -p 0 -n 2000000000"});

  // A cache that fits in memory but not in the address space allowed (ulimit -v): the allocation fails,
  // and the message still says what was being allocated and how much.
  const double phys_gib = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1 << 30);
#if defined(__SANITIZE_ADDRESS__)
  const bool asan = true;  // ASan's shadow memory does not start under a small ulimit -v
#else
  const bool asan = false;
#endif
  if (phys_gib > 4 && !asan) {
    const RunResult r =
        run_with_timeout(dir, run_args({"-c", "3000000"}), "", "ulimit -v 2000000 || exit 99; ");  // ~1.9 GiB
    check_one_line_error(r, {"KV cache for -c 3000000", "2.86 GiB", "allocation failed"});
  }

  const RunResult info = run_timed(dir, {"inspect", m, "--json"});
  REQUIRE(info.status == 0);
  const int64_t n_ctx_train = Json::parse(info.out)["hparams"]["n_ctx_train"].get<int64_t>();
  REQUIRE(n_ctx_train > 0);
  const RunResult at = run_timed(dir, run_args({"-c", std::to_string(n_ctx_train)}));
  CAPTURE(at.err);
  CHECK(at.status == 0);
  CHECK(at.err.find("warning") == std::string::npos);
  const RunResult above = run_timed(dir, run_args({"-c", std::to_string(n_ctx_train + 1)}));
  CAPTURE(above.err);
  CHECK(above.status == 0);
  CHECK(above.err.rfind("moetier: warning: -c " + std::to_string(n_ctx_train + 1), 0) == 0);
  CHECK(above.err.find("training context (" + std::to_string(n_ctx_train) + " tokens)") != std::string::npos);
}

TEST_CASE("--repeat-last-n -1 looks back over the whole context (as llama.cpp); 0 turns the penalty off") {
  TempDir dir;
  const auto tokens = [&](const std::string& last_n) {
    const RunResult r = run_timed(dir, {"run", "-m", tiny_model(), "-p", "The quick brown fox jumps over the lazy dog",
                                        "-n", "24", "-c", "64", "--temp", "0", "--repeat-penalty", "5", "--ignore-eos",
                                        "--repeat-last-n", last_n, "--json"});
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    return Json::parse(r.out)["generated_tokens"].get<std::vector<int32_t>>();
  };
  const auto whole = tokens("64"), off = tokens("0");
  REQUIRE(whole.size() == 24);
  REQUIRE(whole != off);  // the penalty changes this greedy continuation, so the comparison below means something
  CHECK(tokens("-1") == whole);
}

TEST_CASE("tier options without a tier, or with a tier that ignores them, are one error line") {
  TempDir dir;
  const std::string trace = dir.file("trace.jsonl");
  spit(trace, "{\"layer\":0,\"pos\":0,\"experts\":[1,2,3,4],\"weights\":[0.25,0.25,0.25,0.25]}\n");
  struct Case {
    std::vector<std::string> extra;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--cache-size", "4"}, "--cache-size needs a tier"},
      {{"--cache-policy", "lfu"}, "--cache-policy needs a tier"},
      {{"--trace", trace}, "--trace needs a tier"},
      {{"--save-plan", dir.file("p.json")}, "--save-plan needs a tier"},
      {{"--io-queue-depth", "8"}, "--io-queue-depth needs a tier"},
      {{"--no-prefetch"}, "--no-prefetch needs a tier"},
      {{"--ram-budget", ""}, "--ram-budget"},  // used to mean "off"
      {{"--ram-budget", "100MiB", "--cache-size", "4"}, "--cache-size applies to --experts-on-nvme"},
      {{"--experts-on-nvme", "all", "--trace", trace}, "no effect with --experts-on-nvme"},
  };
  for (const Case& c : cases) {
    const std::string cmd = joined(c.extra);
    CAPTURE(cmd);
    const RunResult r = run_timed(dir, run_args(c.extra));
    check_one_line_error(r, {c.message});
    CHECK(r.out.empty());
  }
  CHECK(!std::filesystem::exists(dir.file("p.json")));
}

TEST_CASE("--cache-size: a plain number counts experts, a size with a unit is bytes") {
  TempDir dir;
  const std::string plan = dir.file("plan.json");
  const auto cache_bytes = [&](const std::string& size) {
    const RunResult r =
        run_timed(dir, run_args({"--experts-on-nvme", "all", "--cache-size", size, "--save-plan", plan}));
    CAPTURE(size);
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    const Json j = Json::parse(slurp(plan));
    REQUIRE(j["model"]["expert_bytes"].size() > 0);
    return std::pair(j["cache"]["bytes"].get<uint64_t>(), j["model"]["expert_bytes"][0].get<uint64_t>());
  };
  const auto [one, expert] = cache_bytes("1");
  CHECK(one >= expert);            // one slot holds one expert (plus alignment slack)
  CHECK(one < 2 * expert);
  CHECK(cache_bytes("3").first == 3 * one);
  CHECK(cache_bytes("3MiB").first == 3u << 20);
  CHECK(cache_bytes("4000000B").first == 4000000);
  for (const char* bad : {"0", "1.5", "-2", "lots", "2 experts"}) {
    CAPTURE(bad);
    check_one_line_error(run_timed(dir, run_args({"--experts-on-nvme", "all", "--cache-size", bad})), {"--cache-size"});
  }
}
