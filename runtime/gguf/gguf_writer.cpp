#include "runtime/gguf/gguf_writer.hpp"

#include <cstdio>
#include <cstring>
#include <memory>
#include <unordered_set>

#include "common/error.hpp"

namespace moetier::gguf {
namespace {

template <typename T>
void put(std::vector<std::byte>& out, T v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

void put_string(std::vector<std::byte>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  out.insert(out.end(), p, p + s.size());
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

Value make_array(ValueType elem, std::vector<Value> items) {
  auto a = std::make_shared<Array>();
  a->elem_type = elem;
  a->items = std::move(items);
  return Value{ValueType::ARRAY, std::shared_ptr<const Array>(std::move(a))};
}

}  // namespace

void encode_value(const Value& v, std::vector<std::byte>& out) {
  switch (v.type) {
    case ValueType::UINT8: put<uint8_t>(out, static_cast<uint8_t>(v.as_int())); break;
    case ValueType::INT8: put<int8_t>(out, static_cast<int8_t>(v.as_int())); break;
    case ValueType::UINT16: put<uint16_t>(out, static_cast<uint16_t>(v.as_int())); break;
    case ValueType::INT16: put<int16_t>(out, static_cast<int16_t>(v.as_int())); break;
    case ValueType::UINT32: put<uint32_t>(out, static_cast<uint32_t>(v.as_int())); break;
    case ValueType::INT32: put<int32_t>(out, static_cast<int32_t>(v.as_int())); break;
    case ValueType::UINT64: put<uint64_t>(out, std::get<uint64_t>(v.data)); break;
    case ValueType::INT64: put<int64_t>(out, v.as_int()); break;
    case ValueType::FLOAT32: put<float>(out, static_cast<float>(v.as_float())); break;
    case ValueType::FLOAT64: put<double>(out, v.as_float()); break;
    case ValueType::BOOL: put<uint8_t>(out, v.as_bool() ? 1 : 0); break;
    case ValueType::STRING: put_string(out, v.as_string()); break;
    case ValueType::ARRAY: {
      const Array& a = v.as_array();
      put<uint32_t>(out, static_cast<uint32_t>(a.elem_type));
      put<uint64_t>(out, a.size());
      if (a.elem_type == ValueType::STRING) {
        for (const auto& s : a.strings) put_string(out, s);
      } else {
        for (const auto& it : a.items) encode_value(it, out);
      }
      break;
    }
  }
}

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) fail("GGUF alignment {} is not a power of two", alignment);
  if (alignment != 32) set_u32("general.alignment", alignment);
}

void GgufWriter::set(std::string key, Value v) {
  for (auto& [k, old] : kv_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv_.emplace_back(std::move(key), std::move(v));
}
void GgufWriter::set_u32(std::string key, uint32_t v) { set(std::move(key), Value{ValueType::UINT32, uint64_t{v}}); }
void GgufWriter::set_i32(std::string key, int32_t v) { set(std::move(key), Value{ValueType::INT32, int64_t{v}}); }
void GgufWriter::set_u64(std::string key, uint64_t v) { set(std::move(key), Value{ValueType::UINT64, v}); }
void GgufWriter::set_f32(std::string key, float v) { set(std::move(key), Value{ValueType::FLOAT32, double{v}}); }
void GgufWriter::set_bool(std::string key, bool v) { set(std::move(key), Value{ValueType::BOOL, v}); }
void GgufWriter::set_string(std::string key, std::string v) {
  set(std::move(key), Value{ValueType::STRING, std::move(v)});
}
void GgufWriter::set_string_array(std::string key, std::vector<std::string> v) {
  auto a = std::make_shared<Array>();
  a->elem_type = ValueType::STRING;
  a->strings = std::move(v);
  set(std::move(key), Value{ValueType::ARRAY, std::shared_ptr<const Array>(std::move(a))});
}
void GgufWriter::set_f32_array(std::string key, const std::vector<float>& v) {
  std::vector<Value> items;
  items.reserve(v.size());
  for (float x : v) items.push_back(Value{ValueType::FLOAT32, double{x}});
  set(std::move(key), make_array(ValueType::FLOAT32, std::move(items)));
}
void GgufWriter::set_i32_array(std::string key, const std::vector<int32_t>& v) {
  std::vector<Value> items;
  items.reserve(v.size());
  for (int32_t x : v) items.push_back(Value{ValueType::INT32, int64_t{x}});
  set(std::move(key), make_array(ValueType::INT32, std::move(items)));
}

void GgufWriter::add_tensor(std::string name, GgmlType type, std::vector<int64_t> shape) {
  for (const auto& t : tensors_)
    if (t.name == name) fail("GGUF writer: duplicate tensor {}", name);
  if (shape.empty() || shape.size() > 4) fail("GGUF writer: tensor {}: {} dimensions (expected 1..4)", name, shape.size());
  const auto& info = ggml_type_info(type);
  if (shape.back() % info.block_size != 0)
    fail("GGUF writer: tensor {}: row of {} is not a multiple of the {} block size {}", name, shape.back(), info.name,
         info.block_size);
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  const uint64_t bytes = n / info.block_size * info.type_size;
  tensors_.push_back({std::move(name), type, std::move(shape), bytes, data_bytes_});
  data_bytes_ = align_up(data_bytes_ + bytes, alignment_);
}

std::vector<std::byte> GgufWriter::header_bytes() const {
  std::vector<std::byte> out;
  out.insert(out.end(), {std::byte{'G'}, std::byte{'G'}, std::byte{'U'}, std::byte{'F'}});
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kv_.size());
  for (const auto& [k, v] : kv_) {
    put_string(out, k);
    put<uint32_t>(out, static_cast<uint32_t>(v.type));
    encode_value(v, out);
  }
  for (const auto& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(out, static_cast<uint64_t>(*it));
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    put<uint64_t>(out, t.rel_offset);
  }
  out.resize(align_up(out.size(), alignment_));
  return out;
}

uint64_t GgufWriter::file_size() const {
  // The last tensor is padded too only if followed by another; keep the file exactly header + data.
  uint64_t end = 0;
  for (const auto& t : tensors_) end = t.rel_offset + t.n_bytes;
  return header_bytes().size() + end;
}

void GgufWriter::write(const std::string& path, const FillFn& fill, const ProgressFn& progress) const {
  struct Close {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Close> f(std::fopen(path.c_str(), "wb"));
  if (!f) fail("{}: cannot create: {}", path, std::strerror(errno));
  const auto header = header_bytes();
  auto put_bytes = [&](const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f.get()) != n) fail("{}: write failed: {}", path, std::strerror(errno));
  };
  put_bytes(header.data(), header.size());
  uint64_t total = 0;
  for (const auto& t : tensors_) total += t.n_bytes;
  constexpr uint64_t kChunk = 8ull << 20;
  std::vector<std::byte> buf(kChunk);
  uint64_t written_rel = 0, done = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const auto& t = tensors_[i];
    if (t.rel_offset > written_rel) {
      std::vector<std::byte> pad(t.rel_offset - written_rel);
      put_bytes(pad.data(), pad.size());
    }
    for (uint64_t off = 0; off < t.n_bytes; off += kChunk) {
      const uint64_t n = std::min(kChunk, t.n_bytes - off);
      std::span<std::byte> chunk(buf.data(), n);
      fill(i, off, chunk);
      put_bytes(chunk.data(), n);
      done += n;
      if (progress) progress(done, total);
    }
    written_rel = t.rel_offset + t.n_bytes;
  }
  if (std::fflush(f.get()) != 0) fail("{}: write failed: {}", path, std::strerror(errno));
}

std::vector<std::byte> GgufWriter::to_bytes(const FillFn& fill) const {
  std::vector<std::byte> out = header_bytes();
  const uint64_t base = out.size();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const auto& t = tensors_[i];
    out.resize(base + t.rel_offset + t.n_bytes);
    if (t.n_bytes) fill(i, 0, std::span<std::byte>(out.data() + base + t.rel_offset, t.n_bytes));
  }
  return out;
}

}  // namespace moetier::gguf
