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
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace moetier::gguf
