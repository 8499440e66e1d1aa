// `moetier`: entry point of the CLI. Subcommands register themselves (runtime/cli/commands.hpp); every
// failure is one line "moetier: error: <what>" on stderr and exit status 1: a moetier::Error, a usage
// error found by CLI11 (unknown option, missing or malformed value, value out of range), an allocation
// failure (with the size asked for), and a write error on standard output (full disk, closed file),
// checked once here when the command has finished. `--help` prints the help on stdout and exits 0.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/cli/text_escape.hpp"
#include "runtime/models/size_breakdown.hpp"

namespace {

/// Size of the last allocation that failed (0: none), for the out-of-memory message.
thread_local std::size_t g_failed_alloc_bytes = 0;

/// One line: newlines of a CLI11 message folded into spaces, other control characters escaped.
std::string one_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s)
    if (c == '\n') c = ' ';
  return moetier::cli::escape_control_chars(s);
}

/// Prints "moetier: error: <what>" as one line: control characters in `what` (text from a file, such as
/// a tensor name or a metadata string) are escaped, so they can neither break the line nor reach the
/// terminal.
void print_error(std::string_view what) {
  std::fprintf(stderr, "moetier: error: %s\n", moetier::cli::escape_control_chars(what).c_str());
}

/// The deepest subcommand that was parsed ("run", ...), or "" when the error is at the top level.
std::string subcommand_path(const CLI::App& app) {
  std::string path;
  const CLI::App* at = &app;
  for (;;) {
    const auto subs = at->get_subcommands();
    if (subs.empty()) break;
    at = subs.front();
    path += (path.empty() ? "" : " ") + at->get_name();
  }
  return path;
}

/// 0, or 1 after one error line, when standard output could not be written (checked at exit: a full
/// disk or a closed descriptor must not look like success).
int check_stdout() {
  errno = 0;
  const bool flush_failed = std::fflush(stdout) != 0;
  const int err = errno;
  if (!flush_failed && !std::ferror(stdout)) return 0;
  std::fprintf(stderr, "moetier: error: cannot write to standard output: %s\n",
               err ? std::strerror(err) : "write error");
  return 1;
}

}  // namespace

#if defined(__SANITIZE_ADDRESS__)
#define MOETIER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOETIER_ASAN 1
#endif
#endif
#if !defined(MOETIER_ASAN)  // under ASan its own operator new reports failed allocations
// The replaceable global allocation function, so that an out-of-memory error can say how much was asked
// for. Same behaviour as the default (malloc, std::bad_alloc on failure; no new_handler is installed).
void* operator new(std::size_t n) {
  if (void* p = std::malloc(n ? n : 1)) return p;
  g_failed_alloc_bytes = n;
  throw std::bad_alloc();
}
#endif

int main(int argc, char** argv) {
  CLI::App app{"moetier: Mixture-of-Experts inference with GPU / DRAM / NVMe expert tiers", "moetier"};
  app.require_subcommand(1);
  moetier::cli::register_inspect(app);
  moetier::cli::register_synth(app);
  moetier::cli::register_run(app);
  moetier::cli::register_chat(app);
  moetier::cli::register_bench(app);
  moetier::cli::register_plan(app);
  moetier::cli::register_serve(app);
  moetier::cli::register_profile(app);
  moetier::cli::register_calibrate(app);
  // llama.cpp's multi-letter single-dash options (CLI11 takes none after one dash): -cnv (conversation
  // mode), -np (server slots), spelled as their long forms.
  std::vector<std::string> args(argv + 1, argv + argc);
  for (auto& a : args) {
    if (a == "-cnv") a = "--conversation";
    if (a == "-np") a = "--parallel";
  }
  std::reverse(args.begin(), args.end());  // CLI11's parse(vector) takes the arguments in reverse order
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {  // --help
      app.exit(e);
      return check_stdout();
    }
    const std::string sub = subcommand_path(app);
    std::fprintf(stderr, "moetier: error: %s%s%s (see moetier%s%s --help)\n", sub.c_str(), sub.empty() ? "" : ": ",
                 one_line(e.what()).c_str(), sub.empty() ? "" : " ", sub.c_str());
    return 1;
  } catch (const moetier::Error& e) {
    print_error(e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    if (g_failed_alloc_bytes != 0)
      std::fprintf(stderr, "moetier: error: out of memory: an allocation of %s failed\n",
                   moetier::models::format_bytes(g_failed_alloc_bytes).c_str());
    else
      std::fprintf(stderr, "moetier: error: out of memory (an allocation failed)\n");
    return 1;
  } catch (const std::exception& e) {
    print_error(e.what());
    return 1;
  }
  return check_stdout();
}
