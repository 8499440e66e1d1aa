// LD_PRELOAD probe for the budget test: when the process exits, appends its peak resident memory
// (the VmHWM line of /proc/self/status, kB) and its storage I/O (read_bytes and rchar of
// /proc/self/io, bytes) to the file named by env MOETIER_PROBE_OUT, as "vmhwm_kb N\nread_bytes N\nrchar N\n".
// Preloading costs the probed process a few pages; nothing runs before exit.
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

/// Value of the first line of `path` that starts with `key` (0 when absent).
unsigned long long field(const char* path, const char* key) {
  std::FILE* f = std::fopen(path, "r");
  if (f == nullptr) return 0;
  char line[256];
  unsigned long long v = 0;
  const size_t n = std::strlen(key);
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::strncmp(line, key, n) == 0) {
      v = std::strtoull(line + n, nullptr, 10);
      break;
    }
  std::fclose(f);
  return v;
}

__attribute__((destructor)) void report() {
  const char* out = std::getenv("MOETIER_PROBE_OUT");
  if (out == nullptr || *out == '\0') return;
  std::FILE* f = std::fopen(out, "a");
  if (f == nullptr) return;
  std::fprintf(f, "vmhwm_kb %llu\nread_bytes %llu\nrchar %llu\n", field("/proc/self/status", "VmHWM:"),
               field("/proc/self/io", "read_bytes:"), field("/proc/self/io", "rchar:"));
  std::fclose(f);
}

}  // namespace
