#include "runtime/gguf/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include "common/error.hpp"
#include "common/file_io.hpp"

namespace moetier::gguf {

MappedFile::MappedFile(std::string path) : path_(std::move(path)) {
  // O_NONBLOCK: a FIFO without a writer is refused below instead of blocking here forever.
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) fail("{}: cannot open: {}", path_, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", path_, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: is a {}, not a regular file", path_, file_type_name(st.st_mode));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      fail("{}: cannot mmap {} bytes: {}", path_, size_, std::strerror(err));
    }
    data_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);
}

void MappedFile::release() {
  if (anon_base_)
    ::munmap(anon_base_, anon_len_);
  else if (data_)
    ::munmap(const_cast<std::byte*>(data_), size_);
  data_ = nullptr;
  anon_base_ = nullptr;
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)),
      data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      anon_base_(std::exchange(o.anon_base_, nullptr)),
      anon_len_(std::exchange(o.anon_len_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    anon_base_ = std::exchange(o.anon_base_, nullptr);
    anon_len_ = std::exchange(o.anon_len_, 0);
  }
  return *this;
}

void MappedFile::copy_to_huge_pages() {
  if (anon_base_ || size_ == 0) return;
  constexpr size_t kHuge = size_t{2} << 20, kChunk = size_t{64} << 20;
  const size_t len = (size_ + 2 * kHuge - 1) / kHuge * kHuge;  // room to start on a 2 MiB boundary
  void* base = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) fail("{}: cannot allocate {} bytes to copy the file into: {}", path_, len, std::strerror(errno));
  auto* dst = reinterpret_cast<std::byte*>((reinterpret_cast<uintptr_t>(base) + kHuge - 1) / kHuge * kHuge);
  ::madvise(dst, size_, MADV_HUGEPAGE);  // advice only: 4 KiB pages where the kernel has no huge page
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    ::munmap(base, len);
    fail("{}: cannot open: {}", path_, std::strerror(err));
  }
  for (size_t off = 0; off < size_;) {
    const ssize_t n = ::pread(fd, dst + off, std::min(kChunk, size_ - off), static_cast<off_t>(off));
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      ::munmap(base, len);
      fail("{}: reading the weights at offset {}: {}", path_, off, n == 0 ? "file shorter than when opened" : std::strerror(err));
    }
    ::posix_fadvise(fd, static_cast<off_t>(off), n, POSIX_FADV_DONTNEED);
    off += static_cast<size_t>(n);
  }
  ::close(fd);
  ::munmap(const_cast<std::byte*>(data_), size_);
  ::mprotect(dst, size_, PROT_READ);  // weights are read-only, as when mapped
  data_ = dst;
  anon_base_ = base;
  anon_len_ = len;
}

}  // namespace moetier::gguf
