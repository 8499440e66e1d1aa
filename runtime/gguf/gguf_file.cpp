#include "runtime/gguf/gguf_file.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <unordered_set>

#include "common/error.hpp"

namespace moetier::gguf {

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t TensorInfo::n_rows() const {
  int64_t n = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) n *= shape[i];
  return n;
}

uint64_t ggml_row_bytes_checked(GgmlType type, int64_t n_elements, const std::string& what) {
  const auto& info = ggml_type_info(type);
  if (n_elements % info.block_size != 0)
    fail("{}: row of {} elements is not a multiple of the {} block size {}", what, n_elements, info.name,
         info.block_size);
  return static_cast<uint64_t>(n_elements) / info.block_size * info.type_size;
}

namespace {

constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 8;

/// Bounds-checked little-endian cursor over the file bytes.
class Cursor {
 public:
  Cursor(std::span<const std::byte> b, const std::string& path) : b_(b), path_(path) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return b_.size() - pos_; }
  const std::string& path() const { return path_; }

  template <typename T>
  T read(const char* what) {
    if (remaining() < sizeof(T))
      fail("{}: offset {}: truncated file while reading {} ({} bytes needed, {} left)", path_, pos_, what,
           sizeof(T), remaining());
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    const uint64_t at = pos_;
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      fail("{}: offset {}: {} length {} exceeds the {} bytes left in the file", path_, at, what, len,
           remaining());
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), len);
    pos_ += len;
    return s;
  }

  /// Checks that `count` items of at least `min_bytes` each can still be present.
  void check_count(uint64_t count, uint64_t min_bytes, uint64_t at, const char* what) const {
    if (min_bytes == 0) min_bytes = 1;
    if (count > remaining() / min_bytes)
      fail("{}: offset {}: {} {} cannot fit in the {} bytes left (at least {} bytes each)", path_, at, what,
           count, remaining(), min_bytes);
  }

 private:
  std::span<const std::byte> b_;
  const std::string& path_;
  uint64_t pos_ = 0;
};

bool known_value_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::FLOAT64); }

Value read_value(Cursor& c, ValueType type, int depth);

Value read_scalar(Cursor& c, ValueType type) {
  Value v;
  v.type = type;
  switch (type) {
    case ValueType::UINT8: v.data = uint64_t{c.read<uint8_t>("uint8")}; break;
    case ValueType::INT8: v.data = int64_t{c.read<int8_t>("int8")}; break;
    case ValueType::UINT16: v.data = uint64_t{c.read<uint16_t>("uint16")}; break;
    case ValueType::INT16: v.data = int64_t{c.read<int16_t>("int16")}; break;
    case ValueType::UINT32: v.data = uint64_t{c.read<uint32_t>("uint32")}; break;
    case ValueType::INT32: v.data = int64_t{c.read<int32_t>("int32")}; break;
    case ValueType::UINT64: v.data = c.read<uint64_t>("uint64"); break;
    case ValueType::INT64: v.data = c.read<int64_t>("int64"); break;
    case ValueType::FLOAT32: v.data = double{c.read<float>("float32")}; break;
    case ValueType::FLOAT64: v.data = c.read<double>("float64"); break;
    case ValueType::BOOL: {
      const uint64_t at = c.pos();
      const uint8_t b = c.read<uint8_t>("bool");
      if (b > 1) fail("{}: offset {}: bool value {} (expected 0 or 1)", c.path(), at, b);
      v.data = b != 0;
      break;
    }
    case ValueType::STRING: v.data = c.read_string("string value"); break;
    default: fail("{}: offset {}: unexpected value type {}", c.path(), c.pos(), static_cast<uint32_t>(type));
  }
  return v;
}

Value read_array(Cursor& c, int depth) {
  const uint64_t at = c.pos();
  if (depth >= kMaxArrayDepth)
    fail("{}: offset {}: arrays nested deeper than {} levels", c.path(), at, kMaxArrayDepth);
  const uint32_t et = c.read<uint32_t>("array element type");
  if (!known_value_type(et))
    fail("{}: offset {}: unknown array element type {} (expected 0..12)", c.path(), at, et);
  const auto elem = static_cast<ValueType>(et);
  const uint64_t count_at = c.pos();
  const uint64_t count = c.read<uint64_t>("array length");
  // Minimum bytes per element: fixed size, 8 for a string's length, 12 for a nested array header.
  const uint64_t min_bytes = elem == ValueType::STRING ? 8 : elem == ValueType::ARRAY ? 12 : value_type_size(elem);
  c.check_count(count, min_bytes, count_at, "array length");
  auto arr = std::make_shared<Array>();
  arr->elem_type = elem;
  if (elem == ValueType::STRING) {
    arr->strings.reserve(count);
    for (uint64_t i = 0; i < count; ++i) arr->strings.push_back(c.read_string("array string"));
  } else {
    arr->items.reserve(count);
    for (uint64_t i = 0; i < count; ++i) arr->items.push_back(read_value(c, elem, depth + 1));
  }
  Value v;
  v.type = ValueType::ARRAY;
  v.data = std::shared_ptr<const Array>(std::move(arr));
  return v;
}

Value read_value(Cursor& c, ValueType type, int depth) {
  if (type == ValueType::ARRAY) return read_array(c, depth);
  return read_scalar(c, type);
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

GgufFile parse_gguf(std::span<const std::byte> bytes, const std::string& path) {
  Cursor c(bytes, path);
  GgufFile f;
  f.path = path;
  f.file_size = bytes.size();
  f.metadata.set_context(path);

  if (bytes.size() < 4 || std::memcmp(bytes.data(), "GGUF", 4) != 0) {
    std::string got;
    for (size_t i = 0; i < std::min<size_t>(4, bytes.size()); ++i)
      got += fmt::format("{:02x}", static_cast<unsigned>(bytes[i]));
    fail("{}: offset 0: bad magic {} (expected \"GGUF\" = 47475546): not a GGUF file", path,
         got.empty() ? "(empty file)" : got);
  }
  c.read<uint32_t>("magic");
  const uint32_t version = c.read<uint32_t>("version");
  if ((version & 0xFFFF) == 0 && (version >> 16) != 0)
    fail("{}: offset 4: version field {:#010x} looks byte-swapped: big-endian GGUF files are unsupported "
         "(convert the file to little endian)", path, version);
  if (version == 1) fail("{}: offset 4: GGUF version 1 is unsupported (expected 2 or 3)", path);
  if (version != 2 && version != 3) fail("{}: offset 4: unknown GGUF version {} (expected 2 or 3)", path, version);
  f.version = version;

  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // A tensor info takes at least 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset).
  c.check_count(n_tensors, 32, 8, "tensor count");
  // A key/value takes at least 8 (key length) + 4 (type) + 1 (smallest value).
  c.check_count(n_kv, 13, 16, "metadata count");

  for (uint64_t i = 0; i < n_kv; ++i) {
    const uint64_t at = c.pos();
    std::string key = c.read_string("metadata key");
    const uint64_t type_at = c.pos();
    const uint32_t t = c.read<uint32_t>("metadata value type");
    if (!known_value_type(t))
      fail("{}: offset {}: metadata key {}: unknown value type {} (expected 0..12)", path, type_at, key, t);
    Value v = read_value(c, static_cast<ValueType>(t), 0);
    if (!f.metadata.insert(key, std::move(v))) fail("{}: offset {}: duplicate metadata key {}", path, at, key);
  }

  if (const Value* a = f.metadata.find("general.alignment")) {
    if (a->type != ValueType::UINT32)
      fail("{}: general.alignment has type {} (expected uint32)", path, value_type_name(a->type));
    const int64_t al = a->as_int();
    if (al == 0 || (al & (al - 1)) != 0)
      fail("{}: general.alignment {} is not a power of two", path, al);
    f.alignment = static_cast<uint64_t>(al);
  }

  f.tensors.reserve(n_tensors);
  std::unordered_set<std::string> names;
  names.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    t.info_offset = c.pos();
    t.name = c.read_string("tensor name");
    const std::string ctx = fmt::format("{}: offset {}: tensor {}", path, t.info_offset, t.name);
    if (!names.insert(t.name).second) fail("{}: duplicate tensor name", ctx);
    const uint32_t n_dims = c.read<uint32_t>("tensor n_dims");
    if (n_dims == 0 || n_dims > kMaxDims) fail("{}: n_dims {} (expected 1..{})", ctx, n_dims, kMaxDims);
    std::array<int64_t, kMaxDims> ne{1, 1, 1, 1};
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t v = c.read<uint64_t>("tensor dimension");
      if (v == 0 || v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("{}: dimension ne[{}] = {} (expected 1..2^63-1)", ctx, d, v);
      ne[d] = static_cast<int64_t>(v);
    }
    const uint64_t type_at = c.pos();
    const uint32_t type_id = c.read<uint32_t>("tensor type");
    const auto type_info = ggml_type_info(type_id);
    if (!type_info) fail("{}: unknown ggml type id {} at offset {}", ctx, type_id, type_at);
    t.type = static_cast<GgmlType>(type_id);
    const uint64_t rel_offset = c.read<uint64_t>("tensor data offset");

    // Shape product without overflow (bytes must also fit in 63 bits).
    int64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      if (__builtin_mul_overflow(n_el, ne[d], &n_el))
        fail("{}: element count of shape overflows 64 bits", ctx);
    }
    if (ne[0] % type_info->block_size != 0)
      fail("{}: row of ne[0] = {} elements is not a multiple of the {} block size {}", ctx, ne[0],
           type_info->name, type_info->block_size);
    const uint64_t blocks = static_cast<uint64_t>(n_el) / type_info->block_size;
    uint64_t n_bytes = 0;
    if (__builtin_mul_overflow(blocks, uint64_t{type_info->type_size}, &n_bytes) ||
        n_bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail("{}: byte size of shape overflows", ctx);
    if (rel_offset % f.alignment != 0)
      fail("{}: data offset {} is not a multiple of general.alignment {}", ctx, rel_offset, f.alignment);
    t.offset = rel_offset;  // made absolute below
    t.n_bytes = n_bytes;
    t.shape.assign(ne.rbegin() + (kMaxDims - n_dims), ne.rend());
    f.tensors.push_back(std::move(t));
  }

  f.data_offset = align_up(c.pos(), f.alignment);
  if (!f.tensors.empty() && f.data_offset > f.file_size)
    fail("{}: offset {}: data section starts beyond the end of the file ({} bytes)", path, f.data_offset,
         f.file_size);
  for (auto& t : f.tensors) {
    uint64_t abs = 0, end = 0;
    if (__builtin_add_overflow(f.data_offset, t.offset, &abs) || __builtin_add_overflow(abs, t.n_bytes, &end) ||
        end > f.file_size)
      fail("{}: tensor {}: data outside the file (offset {}, size {}, file {} bytes)", path, t.name,
           f.data_offset + t.offset, t.n_bytes, f.file_size);
    // Kernels read elements and blocks in place (fp16 scales, f32 values): a data start that is not a
    // multiple of the type's alignment (possible with a small general.alignment) would be misaligned.
    if (const uint32_t al = ggml_type_alignment(t.type); abs % al != 0)
      fail("{}: tensor {}: data at file offset {} is not a multiple of {} bytes (the alignment {} blocks need)",
           path, t.name, abs, al, ggml_type_name(t.type));
    t.offset = abs;
  }
  // A tensor must end before the next begins (tensors have shipped that overran their neighbour).
  std::vector<const TensorInfo*> by_offset;
  by_offset.reserve(f.tensors.size());
  for (const auto& t : f.tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& a = *by_offset[i - 1];
    const TensorInfo& b = *by_offset[i];
    if (a.offset + a.n_bytes > b.offset)
      fail("{}: tensor {} (offset {}, size {}) overlaps tensor {} starting at offset {}", path, a.name, a.offset,
           a.n_bytes, b.name, b.offset);
  }
  return f;
}

}  // namespace moetier::gguf
