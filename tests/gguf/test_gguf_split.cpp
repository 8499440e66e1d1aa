// Split models (NAME-0000K-of-0000N.gguf with split.no / split.count / split.tensors.count, as
// llama-gguf-split writes them): opening from the first part, per-tensor file index and bytes, and the
// errors for a missing part, a wrong split.no, a wrong tensor count and a tensor present in two parts.
#include <doctest/doctest.h>

#include <filesystem>

#include "runtime/gguf/gguf_model.hpp"
#include "tests/gguf/gguf_test_util.hpp"

using namespace moetier;
using namespace moetier::gguf;
using moetier::test::check_msg;

namespace {

struct SplitOptions {
  int wrong_no_part = -1;        // part index (0-based) whose split.no is wrong
  int wrong_count_part = -1;     // part index whose split.count is wrong
  int64_t tensors_count = 6;     // split.tensors.count written in part 0
  bool duplicate = false;        // part 2 repeats a tensor name of part 0
};

/// Writes model-0000{1,2,3}-of-00003.gguf, two tensors per part; returns the first part's path.
std::string write_split(const test::TempDir& dir, const SplitOptions& o = {}) {
  std::string first;
  for (int part = 0; part < 3; ++part) {
    GgufWriter w;
    if (part == 0) {
      w.set_string("general.architecture", "llama");
      w.set_u32("llama.block_count", 3);
    }
    w.set("split.no", Value{ValueType::UINT16, uint64_t(part == o.wrong_no_part ? 5 : part)});
    w.set("split.count", Value{ValueType::UINT16, uint64_t(part == o.wrong_count_part ? 4 : 3)});
    w.set("split.tensors.count", Value{ValueType::INT32, int64_t{o.tensors_count}});
    w.add_tensor("blk." + std::to_string(part) + ".ffn_up.weight", GgmlType::F32, {4, 16 * (part + 1)});
    const bool dup = o.duplicate && part == 2;
    w.add_tensor(dup ? "blk.0.ffn_down.weight" : "blk." + std::to_string(part) + ".ffn_down.weight", GgmlType::Q8_0,
                 {2, 32});
    const std::string path = dir.file(fmt::format("model-{:05d}-of-00003.gguf", part + 1));
    w.write(path, test::pattern_fill);
    if (part == 0) first = path;
  }
  return first;
}

std::string open_error(const std::string& path) {
  try {
    (void)GgufModel::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("GgufModel::open accepted " << path);
  return {};
}

}  // namespace

TEST_CASE("split_part_path names the parts of a split model") {
  CHECK(split_part_path("d/m-00001-of-00003.gguf", 2, 3) == "d/m-00002-of-00003.gguf");
  CHECK(split_part_path("m-00001-of-00012.gguf", 12, 12) == "m-00012-of-00012.gguf");
  CHECK(split_part_path("model.gguf", 2, 3).empty());
}

TEST_CASE("a 3-part split model opens from its first part") {
  test::TempDir dir("split");
  const std::string first = write_split(dir);
  const GgufModel m = GgufModel::open(first);
  REQUIRE(m.n_files() == 3);
  CHECK(m.path() == first);
  CHECK(m.architecture() == "llama");
  CHECK(m.metadata().require_int("llama.block_count") == 3);
  REQUIRE(m.tensors().size() == 6);
  for (int part = 0; part < 3; ++part) {
    CAPTURE(part);
    const TensorInfo& up = m.require("blk." + std::to_string(part) + ".ffn_up.weight");
    const TensorInfo& down = m.require("blk." + std::to_string(part) + ".ffn_down.weight");
    CHECK(up.file_index == static_cast<uint32_t>(part));
    CHECK(down.file_index == static_cast<uint32_t>(part));
    CHECK(m.file_path(up.file_index) == dir.file(fmt::format("model-{:05d}-of-00003.gguf", part + 1)));
    CHECK(up.shape == std::vector<int64_t>{4, 16 * (part + 1)});
    CHECK(up.n_bytes == static_cast<uint64_t>(4 * 16 * (part + 1) * 4));
    CHECK(down.n_bytes == 2 * 34);
    // Bytes: tensor index within its own file is 0 (up) and 1 (down).
    const auto bu = m.data(up);
    const auto bd = m.data(down);
    REQUIRE(bu.size() == up.n_bytes);
    for (size_t i = 0; i < bu.size(); i += 7) CHECK(static_cast<uint8_t>(bu[i]) == (i & 0xFF));
    for (size_t i = 0; i < bd.size(); i += 5) CHECK(static_cast<uint8_t>(bd[i]) == ((31 + i) & 0xFF));
    const FileByteRange r = m.byte_range(down, 34, 34);
    CHECK(r.file_index == static_cast<uint32_t>(part));
    CHECK(r.offset == down.offset + 34);
    CHECK(r.length == 34);
  }
  CHECK(m.total_tensor_bytes() == (4 * 16 * 4) * 6 + 3 * 68);
  CHECK_THROWS_AS((void)m.byte_range(m.require("blk.0.ffn_down.weight"), 60, 10), Error);
  check_msg(open_error(dir.file("model-00002-of-00003.gguf")), {"model-00002-of-00003.gguf", "split.no is 1",
                                                                 "open the first part"});
}

TEST_CASE("split model errors") {
  test::TempDir dir("split-err");
  SUBCASE("missing part") {
    const std::string first = write_split(dir);
    std::filesystem::remove(dir.file("model-00003-of-00003.gguf"));
    check_msg(open_error(first), {dir.file("model-00003-of-00003.gguf"), "cannot open"});
  }
  SUBCASE("wrong split.no") {
    const std::string first = write_split(dir, {.wrong_no_part = 1});
    check_msg(open_error(first), {dir.file("model-00002-of-00003.gguf"), "split.no is 5 (expected 1)"});
  }
  SUBCASE("a part disagreeing on split.count") {
    const std::string first = write_split(dir, {.wrong_count_part = 2});
    check_msg(open_error(first), {dir.file("model-00003-of-00003.gguf"), "split.count is 4", "first part says 3"});
  }
  SUBCASE("wrong split.tensors.count") {
    const std::string first = write_split(dir, {.tensors_count = 7});
    check_msg(open_error(first), {first, "split.tensors.count is 7", "3 parts hold 6 tensors"});
  }
  SUBCASE("a tensor in two parts") {
    const std::string first = write_split(dir, {.duplicate = true});
    check_msg(open_error(first), {dir.file("model-00003-of-00003.gguf"), "tensor blk.0.ffn_down.weight is also in", first});
  }
  SUBCASE("split.count without the split naming") {
    GgufWriter w;
    w.set("split.count", Value{ValueType::UINT16, uint64_t{2}});
    const std::string path = dir.file("plain.gguf");
    w.write(path, test::pattern_fill);
    check_msg(open_error(path), {path, "split.count is 2", "NAME-00001-of-00002.gguf"});
  }
}
