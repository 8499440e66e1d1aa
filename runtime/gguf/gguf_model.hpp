// GgufModel: a GGUF model opened from its (first) file, including split models
// (NAME-00001-of-0000N.gguf with split.count / split.no / split.tensors.count, as llama-gguf-split
// writes them). Metadata comes from the first file; every tensor knows which file holds its bytes.
// Tensor bytes are reachable by read-only mmap (resident weights) or as byte ranges (NVMe tier).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/gguf/gguf_file.hpp"
#include "runtime/gguf/mapped_file.hpp"

namespace moetier::gguf {

/// A contiguous piece of one file: what the NVMe tier reads with io_uring.
struct FileByteRange {
  uint32_t file_index = 0;
  uint64_t offset = 0;  // absolute, bytes
  uint64_t length = 0;  // bytes
};

class GgufModel {
 public:
  /// Opens and validates `path`; for split models the other parts are found beside it by name. Throws
  /// Error for every malformed file, a missing part, a part whose split.no is wrong, a tensor count
  /// that disagrees with split.tensors.count, or a tensor name present in two parts.
  static GgufModel open(const std::string& path);

  const Metadata& metadata() const { return files_.front().metadata; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  /// Tensor by name, or nullptr.
  const TensorInfo* find(std::string_view name) const;
  /// Tensor by name; throws Error "FILE: missing tensor NAME" if absent.
  const TensorInfo& require(std::string_view name) const;

  size_t n_files() const { return files_.size(); }
  const std::string& file_path(uint32_t file_index) const { return files_.at(file_index).path; }
  const GgufFile& file(uint32_t file_index) const { return files_.at(file_index); }
  /// Path of the first file (the name users gave).
  const std::string& path() const { return files_.front().path; }
  /// general.architecture (Error if missing).
  std::string architecture() const;
  /// Sum of all tensor bytes.
  uint64_t total_tensor_bytes() const;

  /// Copies every file of the model into anonymous memory on 2 MiB pages (MappedFile::copy_to_huge_pages;
  /// `--no-mmap`). Call before taking tensor views (before load_model). Throws as that function.
  void copy_to_huge_pages();
  /// Whether the weights are an anonymous copy (true after copy_to_huge_pages) rather than the file mapping.
  bool copied() const { return !maps_.empty() && maps_.front()->copied(); }

  /// Tensor bytes through the read-only mmap of their file (or its anonymous copy).
  std::span<const std::byte> data(const TensorInfo& t) const;
  /// The byte range of a tensor, or of `length` bytes at `offset_in_tensor` inside it (an expert's
  /// slice of a stacked [n_expert, ...] tensor). Throws Error if the sub-range leaves the tensor.
  FileByteRange byte_range(const TensorInfo& t, uint64_t offset_in_tensor = 0, uint64_t length = UINT64_MAX) const;

 private:
  std::vector<GgufFile> files_;
  std::vector<std::shared_ptr<MappedFile>> maps_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
};

/// For a path like "dir/name-00001-of-00003.gguf" returns the path of part `no` (1-based), else "".
std::string split_part_path(const std::string& first_path, int no, int count);

}  // namespace moetier::gguf
