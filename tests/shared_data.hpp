// Access to the reference data in ../shared (models, golden outputs, tokenizer vectors, traces).
// Tests run with the repository root as working directory. A user's clone has no ../shared: tests that
// need it are registered as skipped (doctest::skip) and say why; under CI (env CI=true) a missing
// ../shared is a failure, never a silent skip (see tests/common/test_shared_present.cpp).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace moetier::test {

/// Path of the shared reference folder (env MOETIER_SHARED overrides "../shared").
inline std::filesystem::path shared_dir() {
  if (const char* p = std::getenv("MOETIER_SHARED")) return p;
  return "../shared";
}

/// True when ../shared/models exists; otherwise prints the reason once (to stderr).
inline bool shared_available() {
  static const bool ok = [] {
    const bool present = std::filesystem::exists(shared_dir() / "models");
    if (!present)
      std::fprintf(stderr, "note: %s/models not found: tests that need the shared reference data are skipped\n",
                   shared_dir().string().c_str());
    return present;
  }();
  return ok;
}

/// doctest decorator argument: skip when ../shared is absent.
inline bool no_shared() { return !shared_available(); }

}  // namespace moetier::test
