#include "runtime/gguf/gguf_value.hpp"

#include <fmt/format.h>

#include <limits>

#include "common/error.hpp"

namespace moetier::gguf {

std::string_view value_type_name(ValueType t) {
  switch (t) {
    case ValueType::UINT8: return "uint8";
    case ValueType::INT8: return "int8";
    case ValueType::UINT16: return "uint16";
    case ValueType::INT16: return "int16";
    case ValueType::UINT32: return "uint32";
    case ValueType::INT32: return "int32";
    case ValueType::FLOAT32: return "float32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::UINT64: return "uint64";
    case ValueType::INT64: return "int64";
    case ValueType::FLOAT64: return "float64";
  }
  return "unknown";
}

size_t value_type_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
    case ValueType::UINT16: case ValueType::INT16: return 2;
    case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
    case ValueType::UINT64: case ValueType::INT64: case ValueType::FLOAT64: return 8;
    default: return 0;
  }
}

bool Value::is_integer() const {
  return std::holds_alternative<uint64_t>(data) || std::holds_alternative<int64_t>(data);
}
bool Value::is_float() const { return std::holds_alternative<double>(data); }

int64_t Value::as_int() const {
  if (auto* u = std::get_if<uint64_t>(&data)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) fail("integer value {} out of range", *u);
    return static_cast<int64_t>(*u);
  }
  if (auto* i = std::get_if<int64_t>(&data)) return *i;
  fail("expected an integer, found {}", value_type_name(type));
}

double Value::as_float() const {
  if (auto* d = std::get_if<double>(&data)) return *d;
  if (is_integer()) return static_cast<double>(as_int());
  fail("expected a float, found {}", value_type_name(type));
}

bool Value::as_bool() const {
  if (auto* b = std::get_if<bool>(&data)) return *b;
  fail("expected a bool, found {}", value_type_name(type));
}

const std::string& Value::as_string() const {
  if (auto* s = std::get_if<std::string>(&data)) return *s;
  fail("expected a string, found {}", value_type_name(type));
}

const Array& Value::as_array() const {
  if (auto* a = std::get_if<std::shared_ptr<const Array>>(&data)) return **a;
  fail("expected an array, found {}", value_type_name(type));
}

std::string Value::to_display(size_t max_items) const {
  if (auto* u = std::get_if<uint64_t>(&data)) return fmt::format("{}", *u);
  if (auto* i = std::get_if<int64_t>(&data)) return fmt::format("{}", *i);
  if (auto* d = std::get_if<double>(&data)) return fmt::format("{}", *d);
  if (auto* b = std::get_if<bool>(&data)) return *b ? "true" : "false";
  if (auto* s = std::get_if<std::string>(&data)) {
    std::string shown = s->size() > 60 ? s->substr(0, 57) + "..." : *s;
    for (auto& c : shown)
      if (c == '\n') c = ' ';
    return fmt::format("\"{}\"", shown);
  }
  const Array& a = as_array();
  std::string out = fmt::format("array<{}>[{}] [", value_type_name(a.elem_type), a.size());
  for (size_t i = 0; i < a.size() && i < max_items; ++i) {
    if (i) out += ", ";
    if (a.elem_type == ValueType::STRING) {
      out += fmt::format("\"{}\"", a.strings[i].size() > 20 ? a.strings[i].substr(0, 20) + "..." : a.strings[i]);
    } else {
      out += a.items[i].to_display(max_items);
    }
  }
  if (a.size() > max_items) out += ", ...";
  return out + "]";
}

bool Metadata::insert(std::string key, Value v) {
  auto [it, inserted] = entries_.emplace(key, std::move(v));
  if (inserted) order_.push_back(std::move(key));
  return inserted;
}

const Value* Metadata::find(std::string_view key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

namespace {
template <typename F>
auto with_key(const std::string& ctx, std::string_view key, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    fail("{}: metadata key {}: {}", ctx, key, e.what());
  }
}
}  // namespace

std::optional<int64_t> Metadata::get_int(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return with_key(context_, key, [&] { return v->as_int(); });
}
std::optional<double> Metadata::get_float(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return with_key(context_, key, [&] { return v->as_float(); });
}
std::optional<bool> Metadata::get_bool(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return with_key(context_, key, [&] { return v->as_bool(); });
}
std::optional<std::string> Metadata::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return with_key(context_, key, [&] { return v->as_string(); });
}
const std::vector<std::string>* Metadata::get_string_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return nullptr;
  return with_key(context_, key, [&] {
    const Array& a = v->as_array();
    if (a.elem_type != ValueType::STRING) fail("expected array<string>, found array<{}>", value_type_name(a.elem_type));
    return &a.strings;
  });
}
std::optional<std::vector<double>> Metadata::get_float_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return with_key(context_, key, [&] {
    const Array& a = v->as_array();
    std::vector<double> out;
    out.reserve(a.items.size());
    if (a.elem_type == ValueType::STRING || a.elem_type == ValueType::ARRAY)
      fail("expected a numeric array, found array<{}>", value_type_name(a.elem_type));
    for (const auto& it : a.items) out.push_back(it.as_float());
    return out;
  });
}
std::optional<std::vector<int64_t>> Metadata::get_int_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return with_key(context_, key, [&] {
    const Array& a = v->as_array();
    std::vector<int64_t> out;
    out.reserve(a.items.size());
    if (a.elem_type == ValueType::STRING || a.elem_type == ValueType::ARRAY)
      fail("expected an integer array, found array<{}>", value_type_name(a.elem_type));
    for (const auto& it : a.items) out.push_back(it.as_int());
    return out;
  });
}
int64_t Metadata::require_int(std::string_view key) const {
  auto v = get_int(key);
  if (!v) fail("{}: missing metadata key {} (integer)", context_, key);
  return *v;
}
double Metadata::require_float(std::string_view key) const {
  auto v = get_float(key);
  if (!v) fail("{}: missing metadata key {} (float)", context_, key);
  return *v;
}
std::string Metadata::require_string(std::string_view key) const {
  auto v = get_string(key);
  if (!v) fail("{}: missing metadata key {} (string)", context_, key);
  return *v;
}

}  // namespace moetier::gguf
