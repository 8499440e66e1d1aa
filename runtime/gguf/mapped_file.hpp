// MappedFile: a read-only memory map of a whole file (RAII). Used for GGUF headers and for tensor bytes
// of resident weights; NVMe-tier experts are never read through it (they go through offload/ readers).
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace moetier::gguf {

/// Read-only mmap (PROT_READ, MAP_SHARED) of `path`. Throws Error naming the path on open/stat/mmap
/// failure, and without blocking for anything but a regular file (a FIFO, folder, socket or device, block
/// devices included: their size is not st_size). A zero-length file maps to an empty span.
class MappedFile {
 public:
  explicit MappedFile(std::string path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;

  std::span<const std::byte> bytes() const { return {data_, size_}; }

  /// Replaces the read-only file mapping by a private anonymous copy on 2 MiB pages (llama.cpp's
  /// --no-mmap, plus madvise(MADV_HUGEPAGE): decode reads every weight once per token, and 4 KiB pages
  /// cost a TLB miss per page). The file is read in 64 MiB chunks and each chunk's page-cache pages are
  /// dropped behind it (POSIX_FADV_DONTNEED), so peak memory stays near the file's size instead of twice
  /// it. The contents are the same; bytes() moves: call it before taking views into the file. Throws
  /// Error naming the file and offset on a read error or a short file, and when the copy cannot be
  /// allocated. No effect when already copied.
  void copy_to_huge_pages();
  /// Whether copy_to_huge_pages() has run.
  bool copied() const { return anon_base_ != nullptr; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
  void* anon_base_ = nullptr;  // the anonymous copy's mapping (data_ is its first 2 MiB boundary), or null
  size_t anon_len_ = 0;
  void release();
};

}  // namespace moetier::gguf
