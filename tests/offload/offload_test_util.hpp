// Helpers for the offload tests: temporary files with pseudo-random contents, aligned slot buffers.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "common/aligned_buffer.hpp"
#include "common/error.hpp"

namespace moetier::test {

/// A file of `size` pseudo-random bytes (seeded) in the temp directory, removed on destruction. The
/// contents are kept in memory for comparison.
class TempDataFile {
 public:
  TempDataFile(uint64_t size, uint64_t seed) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "moetier-offload-XXXXXX").string();
    const int fd = ::mkstemp(tmpl.data());
    if (fd < 0) fail("mkstemp failed");
    path_ = tmpl;
    bytes_.resize(size);
    std::mt19937_64 rng(seed);
    for (uint64_t i = 0; i < size; i += 8) {
      const uint64_t v = rng();
      for (uint64_t k = 0; k < 8 && i + k < size; ++k) bytes_[i + k] = static_cast<std::byte>(v >> (8 * k));
    }
    uint64_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd, bytes_.data() + done, size - done);
      if (n <= 0) fail("write to {} failed", path_);
      done += static_cast<uint64_t>(n);
    }
    ::close(fd);
  }
  ~TempDataFile() { std::filesystem::remove(path_); }
  TempDataFile(const TempDataFile&) = delete;
  TempDataFile& operator=(const TempDataFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<std::byte>& bytes() const { return bytes_; }
  /// Truncates the file on disk (the in-memory copy is kept).
  void truncate(uint64_t size) const { std::filesystem::resize_file(path_, size); }

 private:
  std::string path_;
  std::vector<std::byte> bytes_;
};

/// `n` aligned slot buffers of `bytes` each and their spans.
struct SlotBuffers {
  std::vector<AlignedBuffer> buffers;
  std::vector<std::span<std::byte>> spans;
  SlotBuffers(size_t n, uint64_t bytes) {
    buffers.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      buffers.emplace_back(bytes, 4096);
      spans.push_back(buffers.back().span());
    }
  }
};

/// Sets an environment variable for the scope of the object, restoring the previous state.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) {
      had_ = true;
      old_ = old;
    }
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_.c_str(), old_.c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }

 private:
  std::string name_;
  bool had_ = false;
  std::string old_;
};

}  // namespace moetier::test
