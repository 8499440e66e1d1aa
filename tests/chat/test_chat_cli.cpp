// `moetier chat` / `moetier run -cnv` end to end with standard input piped (MOETIER_BIN), on the tiny
// Qwen3-MoE model of ../shared; and ChatSession in-process (interrupted answers).
#include <doctest/doctest.h>

#include <fmt/format.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/chat/chat_session.hpp"
#include "runtime/chat/chat_template.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "runtime/session/session.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "tests/run_util.hpp"
#include "tests/shared_data.hpp"

using moetier::chat::ChatMessage;
using moetier::chat::ChatTemplate;
using moetier::test::RunResult;
using moetier::test::TempDir;

namespace {

std::string model_path() { return (moetier::test::shared_dir() / "models" / "qwen3moe-tiny-q8_0.gguf").string(); }

/// `moetier ARGS` with `input` on standard input.
RunResult run_with_input(const TempDir& dir, const std::vector<std::string>& args, const std::string& input) {
  const char* bin = std::getenv("MOETIER_BIN");
  REQUIRE_MESSAGE(bin != nullptr, "MOETIER_BIN is not set (meson sets it to the built moetier)");
  const std::string in = dir.file("stdin.txt"), out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  moetier::test::spit(in, input);
  std::string cmd = moetier::test::shell_quote(bin);
  for (const auto& a : args) cmd.append(" ").append(moetier::test::shell_quote(a));
  cmd += " <" + moetier::test::shell_quote(in) + " >" + moetier::test::shell_quote(out) + " 2>" +
         moetier::test::shell_quote(err);
  const int rc = std::system(cmd.c_str());
  RunResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = moetier::test::slurp(out);
  r.err = moetier::test::slurp(err);
  return r;
}

/// The JSON lines of stdout.
std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line));
  return v;
}

std::vector<int32_t> ids(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

const std::vector<std::string> kSampling = {"-n", "8", "--temp", "0", "--ignore-eos", "-c", "256", "--gemm-min-batch", "0"};
const std::string kSystem = "You are terse.";
const std::string kUser1 = "Hello there", kUser2 = "What is two plus two?";

std::vector<std::string> chat_args(std::vector<std::string> extra) {
  std::vector<std::string> a = {"chat", "-m", model_path(), "--json", "--system", kSystem};
  a.insert(a.end(), kSampling.begin(), kSampling.end());
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

}  // namespace

TEST_CASE("moetier chat: the second turn prefills only its new tokens" * doctest::skip(moetier::test::no_shared())) {
  TempDir dir;
  const RunResult r = run_with_input(dir, chat_args({}), kUser1 + "\n" + kUser2 + "\n/exit\n");
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const auto turns = json_lines(r.out);
  REQUIRE(turns.size() == 2);
  CHECK(turns[0]["turn"] == 1);
  CHECK(turns[1]["turn"] == 2);

  auto g = moetier::gguf::GgufModel::open(model_path());
  const auto tok = moetier::tokenizer::Tokenizer::from_gguf(g);
  const auto tmpl = ChatTemplate::for_model(g);
  REQUIRE(tmpl.name() == "chatml");  // the tiny model has no tokenizer.chat_template
  const auto gen1 = ids(turns[0]["generated_ids"]);
  REQUIRE(gen1.size() == 8);
  std::string text1;
  for (int32_t id : gen1) text1 += tok.token_to_piece(id, true);
  CHECK(turns[0]["text"] == text1);

  // Turn 1: the whole rendering of [system, user].
  const std::vector<ChatMessage> conv1 = {{"system", kSystem}, {"user", kUser1}};
  const std::string full1 = tmpl.render(conv1, true);
  CHECK(ids(turns[0]["prefill_ids"]) == tok.encode(full1, true, true));
  CHECK(turns[0]["reused_tokens"] == 0);

  // Turn 2: the last sampled token (not yet in the cache) and the text after the first answer, nothing else.
  const std::vector<ChatMessage> conv2 = {{"system", kSystem}, {"user", kUser1}, {"assistant", text1}, {"user", kUser2}};
  const std::string full2 = tmpl.render(conv2, true);
  REQUIRE(full2.starts_with(full1 + text1));
  std::vector<int32_t> expected = {gen1.back()};
  const auto delta = tok.encode(full2.substr(full1.size() + text1.size()), false, true);
  expected.insert(expected.end(), delta.begin(), delta.end());
  CHECK(full2.substr(full1.size() + text1.size()).starts_with("<|im_end|>\n<|im_start|>user\n"));
  CHECK(ids(turns[1]["prefill_ids"]) == expected);
  CHECK(turns[1]["prefill_tokens"] == expected.size());
  CHECK(turns[1]["reused_tokens"] == turns[0]["prefill_tokens"].get<size_t>() + gen1.size() - 1);
  CHECK(turns[1]["discarded_tokens"] == 0);
  CHECK(expected.size() < tok.encode(full2, true, true).size() / 2);

  SUBCASE("the answer built on the cache is the answer to the whole conversation prefilled at once") {
    // Same tokens in the cache as a fresh prompt of the whole conversation: same greedy answer.
    std::vector<int32_t> cache = ids(turns[0]["prefill_ids"]);
    cache.insert(cache.end(), gen1.begin(), gen1.end() - 1);
    cache.insert(cache.end(), expected.begin(), expected.end());
    REQUIRE(cache == tok.encode(full2, true, true));
    std::vector<std::string> args = {"run", "-m", model_path(), "-p", full2, "--json"};
    args.insert(args.end(), kSampling.begin(), kSampling.end());
    const RunResult whole = moetier::test::run_moetier(dir, args);
    REQUIRE(whole.status == 0);
    const auto j = nlohmann::json::parse(whole.out);
    CHECK(ids(j["prompt_tokens"]) == cache);
    CHECK(ids(j["generated_tokens"]) == ids(turns[1]["generated_ids"]));
  }

  SUBCASE("without --json the answers stream to stdout, one line each; -v reports the prefill") {
    std::vector<std::string> args = chat_args({"-v"});
    args.erase(args.begin() + 3);  // --json
    const RunResult plain = run_with_input(dir, args, kUser1 + "\n" + kUser2 + "\n");  // end of input leaves
    CAPTURE(plain.err);
    REQUIRE(plain.status == 0);
    CHECK(plain.out == turns[0]["text"].get<std::string>() + "\n" + turns[1]["text"].get<std::string>() + "\n");
    CHECK(plain.err.find(fmt::format("turn 2: prefilled {} tokens ({} reused from the cache, 0 discarded)",
                                     expected.size(), turns[1]["reused_tokens"].get<int>())) != std::string::npos);
  }

  SUBCASE("run -cnv is the same chat, with -p as the system message") {
    std::vector<std::string> args = {"run", "-cnv", "-m", model_path(), "--json", "-p", kSystem};
    args.insert(args.end(), kSampling.begin(), kSampling.end());
    const RunResult cnv = run_with_input(dir, args, kUser1 + "\n" + kUser2 + "\n/exit\n");
    CAPTURE(cnv.err);
    REQUIRE(cnv.status == 0);
    auto a = json_lines(cnv.out), b = turns;
    REQUIRE(a.size() == 2);
    for (size_t i = 0; i < 2; ++i) {
      a[i].erase("timings");
      b[i].erase("timings");
      CHECK(a[i] == b[i]);
    }
  }
}

TEST_CASE("moetier chat with a template that rewrites earlier answers cuts the cache back to the common prefix" *
          doctest::skip(moetier::test::no_shared())) {
  TempDir dir;
  // GLM-4.5 writes "\n<think></think>\n" before an earlier answer, which the cache does not hold.
  const RunResult r = run_with_input(dir, chat_args({"--chat-template", "glm4"}), kUser1 + "\n" + kUser2 + "\n");
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const auto turns = json_lines(r.out);
  REQUIRE(turns.size() == 2);
  auto g = moetier::gguf::GgufModel::open(model_path());
  const auto tok = moetier::tokenizer::Tokenizer::from_gguf(g);
  const auto tmpl = ChatTemplate::by_name("glm4");
  const std::string text1 = turns[0]["text"];
  const auto all = tok.encode(
      tmpl.render({{"system", kSystem}, {"user", kUser1}, {"assistant", text1}, {"user", kUser2}}, true), true, true);
  const size_t reused = turns[1]["reused_tokens"], discarded = turns[1]["discarded_tokens"];
  CHECK(discarded > 0);
  CHECK(reused + discarded == turns[0]["prefill_tokens"].get<size_t>() + 8 - 1);
  CHECK(ids(turns[1]["prefill_ids"]) == std::vector<int32_t>(all.begin() + static_cast<long>(reused), all.end()));
}

TEST_CASE("moetier chat: blank lines send nothing, a message too long for the context is refused and the chat goes on" *
          doctest::skip(moetier::test::no_shared())) {
  TempDir dir;
  const std::string huge(4000, 'x');
  const RunResult r = run_with_input(dir, chat_args({}), "   \n\t\n" + kUser1 + "\n" + huge + "\n" + kUser2 + "\n  /exit  \nnever sent\n");
  CAPTURE(r.err);
  CHECK(r.status == 0);
  const auto turns = json_lines(r.out);
  REQUIRE(turns.size() == 2);  // the blank lines, the refused message and the line after /exit sent nothing
  CHECK(turns[0]["turn"] == 1);
  CHECK(turns[1]["turn"] == 2);
  CHECK(r.err.find("the message was not sent") != std::string::npos);
  // The refused message changed nothing: turn 2 builds on turn 1's cache with nothing discarded.
  CHECK(turns[1]["discarded_tokens"] == 0);
  CHECK(turns[1]["reused_tokens"].get<int>() > 0);
}

TEST_CASE("moetier chat: a bad --chat-template is one error line, before the model is opened") {
  TempDir dir;
  const RunResult r = run_with_input(dir, {"chat", "-m", dir.file("absent.gguf"), "--chat-template", "vicuna"}, "hi\n");
  moetier::test::check_one_line_error(r, {"unknown chat template \"vicuna\"", "chatml", "gpt-oss"});
  const RunResult run = moetier::test::run_moetier(dir, {"run", "-m", dir.file("absent.gguf"), "--system", "x"});
  moetier::test::check_one_line_error(run, {"--chat-template and --system need --chat"});
}

TEST_CASE("ChatSession: an interrupted answer stops after one token and the next turn starts from it" *
          doctest::skip(moetier::test::no_shared())) {
  auto g = moetier::gguf::GgufModel::open(model_path());
  auto model = moetier::models::load_model(g);
  const auto tok = moetier::tokenizer::Tokenizer::from_gguf(g);
  moetier::Session session(*model, tok, 256);
  moetier::chat::ChatSession chat(session, tok, ChatTemplate::by_name("chatml"));
  std::atomic<bool> stop{true};
  moetier::GenerateParams p;
  p.n_predict = 8;
  p.sampling.temperature = 0;
  p.stop_at_eog = false;
  p.interrupt = &stop;
  const auto t1 = chat.turn(kUser1, p, {});
  CHECK(t1.gen.stop_reason == "interrupted");
  CHECK(t1.gen.n_generated == 1);
  CHECK(session.cache().n_past == t1.n_prefill);  // the one answer token is held back, not in the cache
  CHECK(chat.cached_tokens().size() == static_cast<size_t>(t1.n_prefill));
  stop = false;
  const auto t2 = chat.turn(kUser2, p, {});
  CHECK(t2.gen.stop_reason == "n_predict");
  CHECK(t2.n_reused == t1.n_prefill);
  REQUIRE(!t2.prefill.empty());
  CHECK(t2.prefill.front() == t1.gen.tokens.back());
  CHECK(session.cache().n_past == t1.n_prefill + t2.n_prefill + 7);
  REQUIRE(chat.history().size() == 4);
  CHECK(chat.history()[1].content == tok.token_to_piece(t1.gen.tokens[0], true));
}

namespace {

/// `moetier ARGS` started with standard input on the FIFO `fifo` (opened read-write, so it never sees end
/// of input), stdout / stderr to files of `dir`. Returns the child's pid.
pid_t start_on_fifo(const TempDir& dir, const std::vector<std::string>& args, const std::string& fifo) {
  const char* bin = std::getenv("MOETIER_BIN");
  REQUIRE(bin != nullptr);
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  // Everything the child needs is built before fork(): between fork and exec in a process with threads
  // only async-signal-safe calls are allowed (no allocation).
  std::vector<char*> argv = {const_cast<char*>(bin)};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int in = ::open(fifo.c_str(), O_RDWR);
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || o < 0 || e < 0) ::_exit(127);
    ::dup2(in, 0);
    ::dup2(o, 1);
    ::dup2(e, 2);
    ::execv(bin, argv.data());
    ::_exit(127);
  }
  return pid;
}

/// Waits until `pred()` holds (true) or `seconds` pass (false).
template <typename F>
bool wait_for(F pred, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

/// The exit status of `pid` once it ends within `seconds` (-1 when killed by a signal, -2 on timeout: then
/// it is killed).
int wait_exit(pid_t pid, double seconds) {
  int status = 0;
  if (!wait_for([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, seconds)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return -2;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("moetier chat: Ctrl-C stops the answer, Ctrl-C at the prompt leaves" *
          doctest::skip(moetier::test::no_shared())) {
  TempDir dir;
  const std::string fifo = dir.file("stdin.fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // An answer that would run for thousands of tokens.
  const pid_t pid = start_on_fifo(
      dir, {"chat", "-m", model_path(), "-n", "-1", "--ignore-eos", "-c", "16384", "--temp", "0", "-v"}, fifo);
  const int w = ::open(fifo.c_str(), O_WRONLY);
  REQUIRE(w >= 0);
  const auto out = [&] { return moetier::test::slurp(dir.file("stdout.txt")); };
  const auto err = [&] { return moetier::test::slurp(dir.file("stderr.txt")); };
  REQUIRE(wait_for([&] { return err().find("moetier: chat (template") != std::string::npos; }, 60));
  REQUIRE(::write(w, "Hello\n", 6) == 6);
  REQUIRE(wait_for([&] { return !out().empty(); }, 60));  // the answer is streaming
  ::kill(pid, SIGINT);
  CHECK(wait_for([&] { return err().find("(interrupted)") != std::string::npos; }, 60));
  CAPTURE(err());
  CHECK(err().find("turn 1: prefilled") != std::string::npos);
  CHECK(out().ends_with("\n"));  // the stopped answer ends its line; the chat waits for the next message
  ::kill(pid, SIGINT);            // at the prompt: leaves
  CHECK(wait_exit(pid, 60) == 0);
  ::close(w);
}
