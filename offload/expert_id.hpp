// offload/expert_id.hpp — what the offload layer knows about an expert: its identity (layer, expert id)
// and where its bytes live (a list of byte ranges in the model's files). Nothing here knows GGUF: the
// runtime turns "blk.L.ffn_{gate,up,down}_exps slice E" into three ByteRanges; GGUF tensor data is only
// 32-byte aligned, so ranges may start and end anywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include <fmt/format.h>

namespace moetier::offload {

/// One routed expert: `layer` is the model's block index (il), `expert` the router's output index.
/// Ordered by (layer, expert).
struct ExpertId {
  int32_t layer = 0;
  int32_t expert = 0;
  friend auto operator<=>(const ExpertId&, const ExpertId&) = default;
};

/// Hash of an ExpertId (both fields mixed; usable with std::unordered_map).
struct ExpertIdHash {
  size_t operator()(ExpertId id) const noexcept {
    const uint64_t k = (static_cast<uint64_t>(static_cast<uint32_t>(id.layer)) << 32) |
                       static_cast<uint32_t>(id.expert);
    // splitmix64 finaliser: cheap and well mixed.
    uint64_t z = k + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return static_cast<size_t>(z ^ (z >> 31));
  }
};

/// "layer 3 expert 17" — the form used in error messages.
inline std::string to_string(ExpertId id) { return fmt::format("layer {} expert {}", id.layer, id.expert); }

/// A contiguous run of bytes in one of the model's files: [offset, offset + length) of file
/// `file_index` (index into the file list the reader was opened with). Units: bytes. No alignment
/// requirement (GGUF data is 32-byte aligned at best).
struct ByteRange {
  uint32_t file_index = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  friend bool operator==(const ByteRange&, const ByteRange&) = default;
};

/// Sum of the lengths of `ranges` (the expert's payload bytes).
inline uint64_t total_length(std::span<const ByteRange> ranges) {
  uint64_t n = 0;
  for (const ByteRange& r : ranges) n += r.length;
  return n;
}

}  // namespace moetier::offload

template <>
struct std::hash<moetier::offload::ExpertId> : moetier::offload::ExpertIdHash {};
