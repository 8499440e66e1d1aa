// GGUF metadata values: the 13 value types of the GGUF spec (v2/v3), including nested arrays, and a
// key -> value map with typed, checked accessors.
// Source: GGUF specification (ggml/docs/gguf.md), gguf_type in ggml/include/gguf.h.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace moetier::gguf {

/// GGUF metadata value type ids (uint32 in the file).
enum class ValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

/// Name of a value type ("uint32", "array", ...); "unknown" for ids outside the spec.
std::string_view value_type_name(ValueType t);
/// Bytes of one scalar of a fixed-size type (0 for STRING and ARRAY).
size_t value_type_size(ValueType t);

struct Array;

/// One metadata value. Integers keep their signedness; floats are stored as double (exact for f32).
struct Value {
  ValueType type = ValueType::UINT8;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<const Array>> data;

  bool is_integer() const;
  bool is_float() const;
  /// Integer value; throws Error if not an integer type or out of int64 range.
  int64_t as_int() const;
  /// Float value (float or integer types); throws Error otherwise.
  double as_float() const;
  bool as_bool() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  /// Short human-readable form (arrays abbreviated), for `moetier inspect`.
  std::string to_display(size_t max_items = 8) const;
};

/// A GGUF array: element type plus elements. Numeric/bool elements are kept as Values too, but large
/// string arrays (vocabularies) are kept compactly in `strings`.
struct Array {
  ValueType elem_type = ValueType::UINT8;
  std::vector<std::string> strings;  // elem_type == STRING
  std::vector<Value> items;          // every other element type (nested arrays included)
  size_t size() const { return elem_type == ValueType::STRING ? strings.size() : items.size(); }
};

/// Key -> value map of one GGUF file, with accessors that name the key in their errors.
class Metadata {
 public:
  /// Adds a key; returns false if it already exists (the caller reports the duplicate).
  bool insert(std::string key, Value v);
  const Value* find(std::string_view key) const;
  bool contains(std::string_view key) const { return find(key) != nullptr; }

  /// Typed getters: std::nullopt when absent; Error naming the key when present with the wrong type.
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  /// Array getters: nullptr when absent; Error when present with another element type.
  const std::vector<std::string>* get_string_array(std::string_view key) const;
  std::optional<std::vector<double>> get_float_array(std::string_view key) const;
  std::optional<std::vector<int64_t>> get_int_array(std::string_view key) const;

  /// Required variants: Error "missing key K" when absent.
  int64_t require_int(std::string_view key) const;
  double require_float(std::string_view key) const;
  std::string require_string(std::string_view key) const;

  const std::map<std::string, Value, std::less<>>& entries() const { return entries_; }
  /// Keys in file order.
  const std::vector<std::string>& keys() const { return order_; }
  /// Context used in error messages (file name).
  void set_context(std::string ctx) { context_ = std::move(ctx); }

 private:
  std::map<std::string, Value, std::less<>> entries_;
  std::vector<std::string> order_;
  std::string context_;
};

}  // namespace moetier::gguf
