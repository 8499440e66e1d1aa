// GgufWriter: writes GGUF v3 (little endian) files: metadata, tensor infos, aligned data section.
// Tensor bytes are produced by a callback in chunks, so a 20 GB file is written in bounded memory at
// about the speed of writing 20 GB. Used by `moetier synth` and by tests that build (corrupt) files.
// Source: GGUF specification (ggml/docs/gguf.md).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/ggml_type.hpp"
#include "runtime/gguf/gguf_value.hpp"

namespace moetier::gguf {

class GgufWriter {
 public:
  /// alignment: general.alignment (written as a key only when != 32).
  explicit GgufWriter(uint32_t alignment = 32);

  void set(std::string key, Value v);
  void set_u32(std::string key, uint32_t v);
  void set_i32(std::string key, int32_t v);
  void set_u64(std::string key, uint64_t v);
  void set_f32(std::string key, float v);
  void set_bool(std::string key, bool v);
  void set_string(std::string key, std::string v);
  void set_string_array(std::string key, std::vector<std::string> v);
  void set_f32_array(std::string key, const std::vector<float>& v);
  void set_i32_array(std::string key, const std::vector<int32_t>& v);

  /// Adds a tensor; shape outermost first ({n_out, n_in} for a weight). Throws Error if the innermost
  /// dimension is not a multiple of the type's block size or the name is a duplicate.
  void add_tensor(std::string name, GgmlType type, std::vector<int64_t> shape);

  /// Fills `out` with the tensor's bytes [offset, offset + out.size()).
  using FillFn = std::function<void(size_t tensor_index, uint64_t offset, std::span<std::byte> out)>;
  /// Called after each chunk with (bytes written so far, total bytes).
  using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

  /// Writes the file. Throws Error naming the path on I/O failure.
  void write(const std::string& path, const FillFn& fill, const ProgressFn& progress = {}) const;
  /// The whole file in memory (small files and tests).
  std::vector<std::byte> to_bytes(const FillFn& fill) const;
  /// Header + metadata + tensor infos + padding: the bytes before the data section.
  std::vector<std::byte> header_bytes() const;
  /// Total file size in bytes.
  uint64_t file_size() const;
  size_t n_tensors() const { return tensors_.size(); }
  uint64_t tensor_bytes(size_t i) const { return tensors_[i].n_bytes; }

 private:
  struct Pending {
    std::string name;
    GgmlType type;
    std::vector<int64_t> shape;
    uint64_t n_bytes;
    uint64_t rel_offset;
  };
  uint32_t alignment_;
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<Pending> tensors_;
  uint64_t data_bytes_ = 0;
};

/// Serialises one metadata value (type id not included) in GGUF encoding; appended to `out`.
void encode_value(const Value& v, std::vector<std::byte>& out);

}  // namespace moetier::gguf
