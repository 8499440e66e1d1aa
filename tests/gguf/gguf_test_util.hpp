// Helpers of the GGUF tests: build small files with GgufWriter, find and patch their bytes, expect
// parse errors with given message fragments, temp directories, and a tracker of the largest single
// allocation (to prove that hostile counts do not allocate).
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "runtime/gguf/gguf_file.hpp"
#include "runtime/gguf/gguf_writer.hpp"

namespace moetier::test {

using Bytes = std::vector<std::byte>;

/// Fills every tensor byte with (tensor_index * 31 + offset) & 0xFF: checkable and chunking-independent.
inline void pattern_fill(size_t ti, uint64_t off, std::span<std::byte> out) {
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>((ti * 31 + off + i) & 0xFF);
}

/// Offset of the first occurrence of `needle` at or after `from`; FAILs the test if absent.
inline size_t find_bytes(const Bytes& b, std::string_view needle, size_t from = 0) {
  for (size_t i = from; i + needle.size() <= b.size(); ++i)
    if (std::memcmp(b.data() + i, needle.data(), needle.size()) == 0) return i;
  FAIL("byte string not found: " << needle);
  return 0;
}

template <typename T>
void put_at(Bytes& b, size_t at, T v) {
  REQUIRE(at + sizeof(T) <= b.size());
  std::memcpy(b.data() + at, &v, sizeof(T));
}

template <typename T>
T get_at(const Bytes& b, size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof(T));
  return v;
}

/// Offset of the info record fields of tensor `name` (its name must be unique in the header).
struct TensorInfoAt {
  size_t n_dims;   // uint32
  size_t dims;     // uint64 x n_dims
  size_t type;     // uint32
  size_t offset;   // uint64
};
inline TensorInfoAt tensor_info_at(const Bytes& b, const std::string& name) {
  // The record is: u64 length, name bytes, u32 n_dims, u64 dims[n_dims], u32 type, u64 offset.
  const size_t name_at = find_bytes(b, name);
  TensorInfoAt t;
  t.n_dims = name_at + name.size();
  const auto nd = get_at<uint32_t>(b, t.n_dims);
  t.dims = t.n_dims + 4;
  t.type = t.dims + 8 * nd;
  t.offset = t.type + 4;
  return t;
}

/// Offset of the value of metadata key `key` (just after its u32 type id).
inline size_t kv_value_at(const Bytes& b, const std::string& key) { return find_bytes(b, key) + key.size() + 4; }

/// Parses and returns the error message; FAILs if parsing succeeds or throws something else.
inline std::string parse_error(const Bytes& b, const std::string& name) {
  try {
    (void)gguf::parse_gguf(b, name);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("parse_gguf accepted a corrupt file: " << name);
  return {};
}

/// Checks that `msg` contains every fragment.
inline void check_msg(const std::string& msg, std::initializer_list<std::string_view> parts) {
  for (auto p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "message \"" << msg << "\" lacks \"" << p << "\"");
}

/// A fresh temporary directory, removed with its contents on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("moetier-test-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// Largest single operator-new request since the last reset (tests/gguf/alloc_tracker.cpp).
size_t max_alloc_since_reset();
void reset_max_alloc();

}  // namespace moetier::test
