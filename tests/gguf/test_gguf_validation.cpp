// Every validation rule of parse_gguf, each with a corrupt file built in the test (GgufWriter bytes,
// then patched), checking that the error names the file and the offending key / tensor / offset.
#include <doctest/doctest.h>

#include <limits>

#include "tests/gguf/gguf_test_util.hpp"

using namespace moetier;
using namespace moetier::gguf;
using moetier::test::Bytes;
using moetier::test::check_msg;
using moetier::test::get_at;
using moetier::test::kv_value_at;
using moetier::test::parse_error;
using moetier::test::put_at;
using moetier::test::tensor_info_at;

namespace {

GgufWriter base_writer(uint32_t alignment = 32) {
  GgufWriter w(alignment);
  w.set_string("general.architecture", "llama");
  w.set_u32("test.count", 7);
  w.set_bool("test.flag", true);
  w.set_string_array("test.strings", {"a", "bb", "ccc"});
  w.set_i32_array("test.ints", {1, -2, 3});
  w.add_tensor("tensor_a.weight", GgmlType::F32, {4, 64});   // 1024 bytes
  w.add_tensor("tensor_b.weight", GgmlType::Q8_0, {2, 64});  // 2 rows x 2 blocks x 34 = 136 bytes
  return w;
}

Bytes base_bytes(uint32_t alignment = 32) { return base_writer(alignment).to_bytes(test::pattern_fill); }

}  // namespace

TEST_CASE("a valid file parses with the expected header, metadata, tensors and bytes") {
  const Bytes b = base_bytes();
  const GgufFile f = parse_gguf(b, "valid.gguf");
  CHECK(f.version == 3);
  CHECK(f.alignment == 32);
  CHECK(f.file_size == b.size());
  CHECK(f.data_offset % 32 == 0);
  CHECK(f.metadata.require_string("general.architecture") == "llama");
  CHECK(f.metadata.require_int("test.count") == 7);
  CHECK(f.metadata.get_bool("test.flag") == true);
  REQUIRE(f.metadata.get_string_array("test.strings") != nullptr);
  CHECK(*f.metadata.get_string_array("test.strings") == std::vector<std::string>{"a", "bb", "ccc"});
  CHECK(*f.metadata.get_int_array("test.ints") == std::vector<int64_t>{1, -2, 3});
  REQUIRE(f.tensors.size() == 2);
  CHECK(f.tensors[0].name == "tensor_a.weight");
  CHECK(f.tensors[0].shape == std::vector<int64_t>{4, 64});
  CHECK(f.tensors[0].ne(0) == 64);
  CHECK(f.tensors[0].n_bytes == 1024);
  CHECK(f.tensors[1].type == GgmlType::Q8_0);
  CHECK(f.tensors[1].n_bytes == 136);
  CHECK(f.tensors[0].offset == f.data_offset);
  CHECK(f.tensors[1].offset == f.data_offset + 1024);
  CHECK(static_cast<uint8_t>(b[f.tensors[1].offset + 5]) == ((31 + 5) & 0xFF));
}

TEST_CASE("bad magic and empty files") {
  Bytes b = base_bytes();
  b[0] = std::byte{'X'};
  check_msg(parse_error(b, "bad-magic.gguf"), {"bad-magic.gguf", "offset 0", "bad magic 58475546", "GGUF"});
  check_msg(parse_error(Bytes{}, "empty.gguf"), {"empty.gguf", "bad magic", "(empty file)"});
  check_msg(parse_error(Bytes(b.begin(), b.begin() + 2), "short.gguf"), {"short.gguf", "bad magic"});
}

TEST_CASE("unknown version, version 1 and big-endian files") {
  Bytes b = base_bytes();
  put_at<uint32_t>(b, 4, 4);
  check_msg(parse_error(b, "v4.gguf"), {"v4.gguf", "offset 4", "unknown GGUF version 4", "expected 2 or 3"});
  put_at<uint32_t>(b, 4, 1);
  check_msg(parse_error(b, "v1.gguf"), {"v1.gguf", "offset 4", "version 1 is unsupported"});
  put_at<uint32_t>(b, 4, 0x03000000u);  // version 3 written big-endian
  check_msg(parse_error(b, "be.gguf"), {"be.gguf", "offset 4", "big-endian"});
  put_at<uint32_t>(b, 4, 2);  // v2 has the same layout as v3
  CHECK(parse_gguf(b, "v2.gguf").version == 2);
}

TEST_CASE("counts larger than the file could hold fail fast without allocating") {
  const Bytes base = base_bytes();
  SUBCASE("tensor count") {
    Bytes b = base;
    put_at<uint64_t>(b, 8, uint64_t{1} << 60);
    test::reset_max_alloc();
    check_msg(parse_error(b, "tcount.gguf"), {"tcount.gguf", "offset 8", "tensor count", "cannot fit"});
    CHECK(test::max_alloc_since_reset() < (1u << 20));
  }
  SUBCASE("metadata count") {
    Bytes b = base;
    put_at<uint64_t>(b, 16, uint64_t{1} << 60);
    test::reset_max_alloc();
    check_msg(parse_error(b, "kvcount.gguf"), {"kvcount.gguf", "offset 16", "metadata count", "cannot fit"});
    CHECK(test::max_alloc_since_reset() < (1u << 20));
  }
  SUBCASE("numeric array length 2^60") {
    Bytes b = base;
    const size_t at = kv_value_at(b, "test.ints") + 4;  // after the element type
    put_at<uint64_t>(b, at, uint64_t{1} << 60);
    test::reset_max_alloc();
    check_msg(parse_error(b, "arrlen.gguf"), {"arrlen.gguf", fmt::format("offset {}", at), "array length"});
    CHECK(test::max_alloc_since_reset() < (1u << 20));
  }
  SUBCASE("string array length 2^60") {
    Bytes b = base;
    const size_t at = kv_value_at(b, "test.strings") + 4;
    put_at<uint64_t>(b, at, uint64_t{1} << 60);
    test::reset_max_alloc();
    check_msg(parse_error(b, "strarr.gguf"), {"strarr.gguf", fmt::format("offset {}", at), "array length"});
    CHECK(test::max_alloc_since_reset() < (1u << 20));
  }
  SUBCASE("array length just one element too many") {
    Bytes b = base;
    const size_t at = kv_value_at(b, "test.ints") + 4;
    const uint64_t room = (b.size() - at - 8) / 4;  // int32 elements that could still follow
    put_at<uint64_t>(b, at, room + 1);
    check_msg(parse_error(b, "arrlen1.gguf"), {"arrlen1.gguf", "array length"});
  }
}

TEST_CASE("string lengths larger than the file") {
  const Bytes base = base_bytes();
  SUBCASE("metadata key") {
    Bytes b = base;
    const size_t at = test::find_bytes(b, "test.count") - 8;
    put_at<uint64_t>(b, at, uint64_t{1} << 62);
    test::reset_max_alloc();
    check_msg(parse_error(b, "key.gguf"), {"key.gguf", fmt::format("offset {}", at), "metadata key length"});
    CHECK(test::max_alloc_since_reset() < (1u << 20));
  }
  SUBCASE("string value") {
    Bytes b = base;
    const size_t at = kv_value_at(b, "general.architecture");
    put_at<uint64_t>(b, at, b.size());
    check_msg(parse_error(b, "strval.gguf"), {"strval.gguf", fmt::format("offset {}", at), "string value length"});
  }
  SUBCASE("string inside an array") {
    Bytes b = base;
    const size_t at = kv_value_at(b, "test.strings") + 12;  // first element's length
    put_at<uint64_t>(b, at, uint64_t{1} << 40);
    check_msg(parse_error(b, "arrstr.gguf"), {"arrstr.gguf", fmt::format("offset {}", at), "array string length"});
  }
  SUBCASE("tensor name") {
    Bytes b = base;
    const size_t at = test::find_bytes(b, "tensor_b.weight") - 8;
    put_at<uint64_t>(b, at, uint64_t{1} << 50);
    check_msg(parse_error(b, "tname.gguf"), {"tname.gguf", fmt::format("offset {}", at), "tensor name length"});
  }
}

TEST_CASE("unknown metadata value types and bools other than 0/1") {
  const Bytes base = base_bytes();
  {
    Bytes b = base;
    const size_t at = kv_value_at(b, "test.count") - 4;
    put_at<uint32_t>(b, at, 13);
    check_msg(parse_error(b, "vtype.gguf"),
              {"vtype.gguf", fmt::format("offset {}", at), "test.count", "unknown value type 13"});
  }
  {
    Bytes b = base;
    const size_t at = kv_value_at(b, "test.ints");
    put_at<uint32_t>(b, at, 99);
    check_msg(parse_error(b, "etype.gguf"), {"etype.gguf", fmt::format("offset {}", at), "unknown array element type 99"});
  }
  {
    Bytes b = base;
    const size_t at = kv_value_at(b, "test.flag");
    b[at] = std::byte{2};
    check_msg(parse_error(b, "bool.gguf"), {"bool.gguf", fmt::format("offset {}", at), "bool value 2", "0 or 1"});
  }
}

namespace {

Value scalar(ValueType t, int i) {
  switch (t) {
    case ValueType::UINT8: case ValueType::UINT16: case ValueType::UINT32: case ValueType::UINT64:
      return Value{t, uint64_t(200 + i)};
    case ValueType::INT8: case ValueType::INT16: case ValueType::INT32: case ValueType::INT64:
      return Value{t, int64_t(-100 + i)};
    case ValueType::FLOAT32: case ValueType::FLOAT64: return Value{t, 0.5 * i - 1.25};
    case ValueType::BOOL: return Value{t, i % 2 == 1};
    case ValueType::STRING: return Value{t, std::string(i, 'x') + "y"};
    case ValueType::ARRAY: break;
  }
  FAIL("no scalar of type array");
  return {};
}

Value array_of(ValueType elem, std::vector<Value> items) {
  auto a = std::make_shared<Array>();
  a->elem_type = elem;
  if (elem == ValueType::STRING) {
    for (auto& v : items) a->strings.push_back(v.as_string());
  } else {
    a->items = std::move(items);
  }
  return Value{ValueType::ARRAY, std::shared_ptr<const Array>(std::move(a))};
}

/// Nested array: `depth` levels, the innermost holding 3 scalars of type `leaf`.
Value nested(ValueType leaf, int depth) {
  if (depth == 1) return array_of(leaf, {scalar(leaf, 1), scalar(leaf, 2), scalar(leaf, 3)});
  return array_of(ValueType::ARRAY, {nested(leaf, depth - 1), nested(leaf, depth - 1)});
}

bool same_value(const Value& a, const Value& b) {
  if (a.type != b.type) return false;
  if (a.type != ValueType::ARRAY) return a.data == b.data;
  const Array& x = a.as_array();
  const Array& y = b.as_array();
  if (x.elem_type != y.elem_type || x.size() != y.size() || x.strings != y.strings) return false;
  for (size_t i = 0; i < x.items.size(); ++i)
    if (!same_value(x.items[i], y.items[i])) return false;
  return true;
}

constexpr ValueType kScalarTypes[] = {ValueType::UINT8,   ValueType::INT8,   ValueType::UINT16, ValueType::INT16,
                                      ValueType::UINT32,  ValueType::INT32,  ValueType::FLOAT32, ValueType::BOOL,
                                      ValueType::STRING,  ValueType::UINT64, ValueType::INT64,  ValueType::FLOAT64};

}  // namespace

TEST_CASE("scalars and nested arrays of every type round-trip") {
  GgufWriter w;
  std::vector<std::pair<std::string, Value>> expect;
  for (ValueType t : kScalarTypes) {
    const std::string n(value_type_name(t));
    expect.emplace_back("scalar." + n, scalar(t, 5));
    expect.emplace_back("array." + n, nested(t, 1));
    expect.emplace_back("nested2." + n, nested(t, 2));
    expect.emplace_back("nested3." + n, nested(t, 3));
  }
  expect.emplace_back("empty", array_of(ValueType::UINT32, {}));
  expect.emplace_back("empty_nested", array_of(ValueType::ARRAY, {array_of(ValueType::INT8, {})}));
  for (const auto& [k, v] : expect) w.set(k, v);
  const Bytes b = w.to_bytes(test::pattern_fill);
  const GgufFile f = parse_gguf(b, "nested.gguf");
  CHECK(f.metadata.keys().size() == expect.size());
  for (const auto& [k, v] : expect) {
    CAPTURE(k);
    const Value* got = f.metadata.find(k);
    REQUIRE(got != nullptr);
    CHECK(same_value(*got, v));
  }
  CHECK(f.metadata.keys().front() == expect.front().first);  // file order kept
}

TEST_CASE("arrays nested deeper than 8 levels are rejected") {
  for (int depth : {8, 9}) {
    GgufWriter w;
    w.set("deep", nested(ValueType::UINT8, depth));
    const Bytes b = w.to_bytes(test::pattern_fill);
    if (depth == 8) {
      CHECK(same_value(*parse_gguf(b, "deep8.gguf").metadata.find("deep"), nested(ValueType::UINT8, 8)));
    } else {
      check_msg(parse_error(b, "deep9.gguf"), {"deep9.gguf", "nested deeper than 8"});
    }
  }
}

TEST_CASE("duplicate metadata keys and duplicate tensor names") {
  {
    GgufWriter w;
    w.set_u32("dup.aaa", 1);
    w.set_u32("dup.bbb", 2);
    Bytes b = w.to_bytes(test::pattern_fill);
    const size_t at = test::find_bytes(b, "dup.bbb");
    std::memcpy(b.data() + at, "dup.aaa", 7);
    check_msg(parse_error(b, "dupkey.gguf"), {"dupkey.gguf", fmt::format("offset {}", at - 8), "duplicate metadata key dup.aaa"});
  }
  {
    GgufWriter w;
    w.add_tensor("dupt.aaa", GgmlType::F32, {2, 8});
    w.add_tensor("dupt.bbb", GgmlType::F32, {2, 8});
    Bytes b = w.to_bytes(test::pattern_fill);
    const size_t at = test::find_bytes(b, "dupt.bbb");
    std::memcpy(b.data() + at, "dupt.aaa", 8);
    check_msg(parse_error(b, "duptensor.gguf"),
              {"duptensor.gguf", fmt::format("offset {}", at - 8), "tensor dupt.aaa", "duplicate tensor name"});
  }
}

TEST_CASE("unknown and removed ggml type ids") {
  const Bytes base = base_bytes();
  for (uint32_t id : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 40u, 1000u, 0xFFFFFFFFu}) {
    CAPTURE(id);
    Bytes b = base;
    const auto at = tensor_info_at(b, "tensor_a.weight");
    put_at<uint32_t>(b, at.type, id);
    check_msg(parse_error(b, "type.gguf"),
              {"type.gguf", "tensor tensor_a.weight", fmt::format("unknown ggml type id {} at offset {}", id, at.type)});
  }
}

TEST_CASE("n_dims outside 1..4, zero dimensions and overflowing shapes") {
  const Bytes base = base_bytes();
  const auto at = tensor_info_at(base, "tensor_a.weight");
  for (uint32_t nd : {0u, 5u, 1000u}) {
    Bytes b = base;
    put_at<uint32_t>(b, at.n_dims, nd);
    check_msg(parse_error(b, "ndims.gguf"), {"ndims.gguf", "tensor tensor_a.weight", fmt::format("n_dims {}", nd), "1..4"});
  }
  {
    Bytes b = base;
    put_at<uint64_t>(b, at.dims + 8, 0);
    check_msg(parse_error(b, "zerodim.gguf"), {"zerodim.gguf", "tensor tensor_a.weight", "ne[1] = 0"});
  }
  {
    Bytes b = base;
    put_at<uint64_t>(b, at.dims, uint64_t{1} << 63);
    check_msg(parse_error(b, "hugedim.gguf"), {"hugedim.gguf", "tensor tensor_a.weight", "ne[0]"});
  }
  {  // element count overflows int64
    Bytes b = base;
    put_at<uint64_t>(b, at.dims, uint64_t{1} << 32);
    put_at<uint64_t>(b, at.dims + 8, uint64_t{1} << 32);
    check_msg(parse_error(b, "overflow.gguf"), {"overflow.gguf", "tensor tensor_a.weight", "element count", "overflows"});
  }
  {  // element count fits, byte count (x4 for F32) does not
    Bytes b = base;
    put_at<uint64_t>(b, at.dims, uint64_t{1} << 31);
    put_at<uint64_t>(b, at.dims + 8, uint64_t{1} << 31);
    check_msg(parse_error(b, "bytesoverflow.gguf"), {"bytesoverflow.gguf", "tensor tensor_a.weight", "byte size", "overflows"});
  }
}

TEST_CASE("rows that are not a multiple of the block size") {
  Bytes b = base_bytes();
  const auto at = tensor_info_at(b, "tensor_b.weight");
  put_at<uint64_t>(b, at.dims, 48);  // Q8_0 blocks hold 32
  check_msg(parse_error(b, "rows.gguf"), {"rows.gguf", "tensor tensor_b.weight", "ne[0] = 48", "Q8_0 block size 32"});
}

TEST_CASE("tensor data outside the file, overlapping and unaligned") {
  const Bytes base = base_bytes();
  const auto at = tensor_info_at(base, "tensor_b.weight");
  {
    Bytes b = base;
    put_at<uint64_t>(b, at.offset, uint64_t{1} << 20);
    check_msg(parse_error(b, "outside.gguf"), {"outside.gguf", "tensor tensor_b.weight", "data outside the file",
                                               fmt::format("file {} bytes", b.size())});
  }
  {  // offset so large that offset + size wraps around
    Bytes b = base;
    put_at<uint64_t>(b, at.offset, std::numeric_limits<uint64_t>::max() - 31);
    check_msg(parse_error(b, "wrap.gguf"), {"wrap.gguf", "tensor tensor_b.weight", "data outside the file"});
  }
  {  // truncated data section
    Bytes b = base;
    b.resize(b.size() - 1);
    check_msg(parse_error(b, "trunc.gguf"), {"trunc.gguf", "tensor tensor_b.weight", "data outside the file"});
  }
  {
    Bytes b = base;
    put_at<uint64_t>(b, at.offset, 32);  // inside tensor_a's 1024 bytes
    const GgufFile ok = parse_gguf(base, "x");
    check_msg(parse_error(b, "overlap.gguf"),
              {"overlap.gguf", "tensor tensor_a.weight", fmt::format("offset {}", ok.data_offset), "overlaps tensor tensor_b.weight",
               fmt::format("starting at offset {}", ok.data_offset + 32)});
  }
  {
    Bytes b = base;
    put_at<uint64_t>(b, at.offset, 1028);
    check_msg(parse_error(b, "unaligned.gguf"),
              {"unaligned.gguf", "tensor tensor_b.weight", "data offset 1028", "not a multiple of general.alignment 32"});
  }
}

TEST_CASE("general.alignment: power of two required, custom alignment honoured") {
  SUBCASE("non-power-of-two and zero") {
    for (uint32_t al : {48u, 0u, 3u}) {
      Bytes b = base_bytes(64);
      put_at<uint32_t>(b, kv_value_at(b, "general.alignment"), al);
      check_msg(parse_error(b, "align.gguf"), {"align.gguf", fmt::format("general.alignment {} is not a power of two", al)});
    }
  }
  SUBCASE("wrong value type") {
    Bytes b = base_bytes(64);
    put_at<uint32_t>(b, kv_value_at(b, "general.alignment") - 4, static_cast<uint32_t>(ValueType::INT32));
    check_msg(parse_error(b, "aligntype.gguf"), {"aligntype.gguf", "general.alignment has type int32", "uint32"});
  }
  SUBCASE("64 is valid and used for every offset") {
    GgufWriter w = base_writer(64);
    w.add_tensor("tensor_c.weight", GgmlType::F16, {3, 8});  // 48 bytes: the next offset needs padding
    w.add_tensor("tensor_d.weight", GgmlType::F32, {5});
    const Bytes b = w.to_bytes(test::pattern_fill);
    const GgufFile f = parse_gguf(b, "align64.gguf");
    CHECK(f.alignment == 64);
    CHECK(f.data_offset % 64 == 0);
    REQUIRE(f.tensors.size() == 4);
    for (size_t i = 0; i < f.tensors.size(); ++i) {
      CAPTURE(i);
      CHECK(f.tensors[i].offset % 64 == 0);
      CHECK(static_cast<uint8_t>(b[f.tensors[i].offset + 1]) == ((i * 31 + 1) & 0xFF));
    }
    CHECK(f.tensors[3].offset - f.tensors[2].offset == 64);
    // A 32-aligned offset is not enough here.
    Bytes c = b;
    put_at<uint64_t>(c, tensor_info_at(c, "tensor_b.weight").offset, 1024 + 32);
    check_msg(parse_error(c, "align64bad.gguf"), {"align64bad.gguf", "tensor_b.weight", "not a multiple of general.alignment 64"});
  }
  SUBCASE("alignment 1 cannot put a tensor's blocks at a misaligned address") {
    // general.alignment 1 permits any offset; F32 values or Q8_0 blocks (fp16 scales) at an address that
    // is not a multiple of 4 / 2 would be read misaligned (undefined behaviour the fuzzer found).
    Bytes b = base_bytes(1);
    const test::TensorInfoAt a_at = tensor_info_at(b, "tensor_a.weight"), b_at = tensor_info_at(b, "tensor_b.weight");
    const uint64_t data = b_at.offset + 8;  // alignment 1: the data section follows the last tensor info
    put_at<uint64_t>(b, a_at.offset, data % 4 == 0 ? 2 : 4 - data % 4 + 2);  // F32 at 2 mod 4
    check_msg(parse_error(b, "oddf32.gguf"), {"oddf32.gguf", "tensor tensor_a.weight", "not a multiple of 4 bytes", "F32"});
    put_at<uint64_t>(b, a_at.offset, (4 - data % 4) % 4);                     // F32 aligned now
    const uint64_t rel = data % 2 == 0 ? 1023 : 1022;                        // Q8_0 at an odd address
    put_at<uint64_t>(b, b_at.offset, rel);
    check_msg(parse_error(b, "odd.gguf"), {"odd.gguf", "tensor tensor_b.weight",
                                           fmt::format("file offset {} is not a multiple of 2 bytes", data + rel),
                                           "Q8_0"});
  }
}

TEST_CASE("every truncation of a valid file is an Error, never a crash") {
  const Bytes b = base_bytes();
  int errors = 0;
  for (size_t n = 0; n < b.size(); ++n) {
    try {
      (void)parse_gguf(std::span<const std::byte>(b.data(), n), "prefix.gguf");
    } catch (const Error& e) {
      ++errors;
      CHECK(std::string(e.what()).find("prefix.gguf") != std::string::npos);
    }
  }
  CHECK(errors == static_cast<int>(b.size()));
}
