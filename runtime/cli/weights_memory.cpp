#include "runtime/cli/weights_memory.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include <fstream>
#include <optional>
#include <string>

#include "common/error.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/size_breakdown.hpp"

namespace moetier::cli {
namespace {

// The value in kB of `key` ("MemAvailable:") in a /proc file of "Key: value kB" lines, in bytes.
std::optional<uint64_t> proc_kib_field(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) != 0) continue;
    try {
      return std::stoull(line.substr(key.size())) * 1024;
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

}  // namespace

uint64_t available_memory_bytes() {
  if (const auto v = proc_kib_field("/proc/meminfo", "MemAvailable:")) return *v;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : UINT64_MAX;
}

uint64_t anon_huge_page_bytes() { return proc_kib_field("/proc/self/smaps_rollup", "AnonHugePages:").value_or(0); }

void copy_weights_to_memory(gguf::GgufModel& g) {
  uint64_t file_bytes = 0;
  for (size_t i = 0; i < g.n_files(); ++i) file_bytes += g.file(static_cast<uint32_t>(i)).file_size;
  constexpr uint64_t kKeepFree = uint64_t{1} << 30;
  const uint64_t avail = available_memory_bytes();
  if (file_bytes + kKeepFree > avail)
    fail("--no-mmap: copying {} ({}) into memory needs {} but {} is available (1 GiB is kept free); drop "
         "--no-mmap to map the file, or use --ram-budget to keep part of it on disk",
         g.path(), models::format_bytes(file_bytes), models::format_bytes(file_bytes + kKeepFree),
         models::format_bytes(avail));
  g.copy_to_huge_pages();
}

std::string weights_memory_line(const gguf::GgufModel& g) {
  if (!g.copied()) return "weights: file mapping (4 KiB pages; --no-mmap copies them onto 2 MiB pages)";
  return fmt::format("weights: anonymous copy (--no-mmap), {} of {} on 2 MiB pages",
                     models::format_bytes(anon_huge_page_bytes()), models::format_bytes(g.total_tensor_bytes()));
}

}  // namespace moetier::cli
