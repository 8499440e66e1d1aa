// Where the weights live in memory: the read-only file mapping (default) or, with --no-mmap, an
// anonymous copy on 2 MiB pages (gguf::MappedFile::copy_to_huge_pages), and how much of it the kernel
// actually put on huge pages (bench and run -v report it).
#pragma once

#include <cstdint>
#include <string>

namespace moetier::gguf {
class GgufModel;
}

namespace moetier::cli {

/// Bytes of memory available now (MemAvailable in /proc/meminfo; physical memory when it cannot be read).
uint64_t available_memory_bytes();

/// AnonHugePages of this process (/proc/self/smaps_rollup), bytes; 0 when it cannot be read.
uint64_t anon_huge_page_bytes();

/// --no-mmap: copies the model's files into anonymous memory on 2 MiB pages before any view is taken.
/// Throws Error (naming the option, the size and what is available) when the copy would leave less than
/// 1 GiB of MemAvailable, so the copy cannot push the machine into swap or the OOM killer.
void copy_weights_to_memory(gguf::GgufModel& g);

/// One line for reports: "weights: file mapping (4 KiB pages)" or "weights: anonymous copy, X of Y on
/// 2 MiB pages".
std::string weights_memory_line(const gguf::GgufModel& g);

}  // namespace moetier::cli
