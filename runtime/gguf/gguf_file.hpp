// Parser of one GGUF file (v2 and v3, little endian): header, metadata, tensor infos, data section.
// Every count, length and offset is validated against the bytes really present, so memory used while
// parsing is bounded by the file's size, not by what the header claims. Model files are untrusted input.
// Source: GGUF specification (ggml/docs/gguf.md); checks mirror and extend llama.cpp's gguf.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/ggml_type.hpp"
#include "runtime/gguf/gguf_value.hpp"

namespace moetier::gguf {

/// One tensor of a (possibly split) GGUF model.
struct TensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  /// Shape outermost first (PyTorch order): a GGUF weight with ne = [n_in, n_out] has shape
  /// {n_out, n_in}; stacked experts ne = [n_in, n_out, n_expert] -> {n_expert, n_out, n_in}.
  std::vector<int64_t> shape;
  uint32_t file_index = 0;   // which file of a split model holds the bytes
  uint64_t offset = 0;       // absolute byte offset of the data in that file
  uint64_t n_bytes = 0;      // bytes of the data
  uint64_t info_offset = 0;  // byte offset of this tensor's info record (for error messages)

  int64_t n_elements() const;
  /// Innermost dimension (elements per row).
  int64_t row_size() const { return shape.empty() ? 1 : shape.back(); }
  /// Product of every dimension but the innermost.
  int64_t n_rows() const;
  /// Dimension `i` counted from the innermost (ggml's ne[i]); 1 beyond n_dims.
  int64_t ne(size_t i) const { return i < shape.size() ? shape[shape.size() - 1 - i] : 1; }
};

/// Contents of one parsed GGUF file.
struct GgufFile {
  std::string path;
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // start of the data section (aligned)
  uint64_t file_size = 0;
  Metadata metadata;
  std::vector<TensorInfo> tensors;  // in file order; offsets absolute; file_index set by caller
};

/// Parses `bytes` (the whole file) named `path` (for messages). Validates: magic, version (2 or 3;
/// big-endian files are reported as unsupported), counts and string lengths against remaining bytes,
/// metadata value types, nesting depth, duplicate keys, general.alignment (power of two), tensor
/// n_dims <= 4, dims >= 1 and shape products without overflow, known type ids, rows a multiple of the
/// block size, duplicate tensor names, offsets aligned to general.alignment, data inside the file, and
/// tensors not overlapping. Throws Error "PATH: offset N: what (expected ...)" on the first problem.
GgufFile parse_gguf(std::span<const std::byte> bytes, const std::string& path);

/// Row bytes with validation: throws Error if n_elements is not a multiple of the type's block size.
uint64_t ggml_row_bytes_checked(GgmlType type, int64_t n_elements, const std::string& what);

}  // namespace moetier::gguf
