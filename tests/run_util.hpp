// Helpers shared by tests that work with files and the built `moetier` binary: a temporary folder removed
// on destruction, whole-file read / write, and running the binary (path in env MOETIER_BIN, set by meson)
// with its stdout / stderr captured.
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace moetier::test {

/// A fresh folder under the temp directory (moetier-test-<pid>-<n>), removed with its contents on
/// destruction.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("moetier-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// The whole file as bytes ("" if it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// Writes `bytes` to `path` (replacing it).
inline void spit(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

/// `s` as one single-quoted shell word.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q.append("'\\''");
    else q.push_back(c);
  }
  q.push_back('\'');
  return q;
}

struct RunResult {
  int status = -1;
  std::string out, err;
};

/// Runs `[env...] moetier ARGS` through the shell, stdout / stderr captured in files of `dir`.
inline RunResult run_moetier(const TempDir& dir, const std::vector<std::string>& args,
                             const std::vector<std::string>& env = {}) {
  const char* bin = std::getenv("MOETIER_BIN");
  REQUIRE_MESSAGE(bin != nullptr, "MOETIER_BIN is not set (meson sets it to the built moetier)");
  std::string cmd;
  for (const auto& e : env) cmd += e + " ";  // NAME=value, quoted by the caller where needed
  cmd += shell_quote(bin);
  for (const auto& a : args) cmd.append(" ").append(shell_quote(a));  // (" " + s: g++ 12 -Wrestrict false positive)
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  cmd += " >" + shell_quote(out) + " 2>" + shell_quote(err) + " </dev/null";
  const int rc = std::system(cmd.c_str());
  RunResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

/// Exit status 1 (not a signal: >= 128 is a crash) and exactly one stderr line "moetier: error: ..." that
/// holds every part.
inline void check_one_line_error(const RunResult& r, const std::vector<std::string>& parts) {
  CAPTURE(r.err);
  CHECK(r.status == 1);
  CHECK(r.err.rfind("moetier: error: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  for (const auto& p : parts) CHECK_MESSAGE(r.err.find(p) != std::string::npos, "stderr lacks \"" << p << "\"");
}

}  // namespace moetier::test
