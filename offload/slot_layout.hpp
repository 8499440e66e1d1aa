// offload/slot_layout.hpp — where an expert's byte ranges land inside a cache slot.
// O_DIRECT reads need file offset, length and buffer address all multiples of the logical block size,
// so each range is read as its enclosing 4096-aligned extent into a 4096-aligned position of the slot,
// and the range's bytes are the sub-span starting at (offset - aligned offset). The reader and the cache
// share this one layout, so a slot sized with slot_bytes_needed() always fits the expert.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "offload/expert_id.hpp"

namespace moetier::offload {

/// Alignment of O_DIRECT reads and of slot buffers (bytes). 4096 covers 512- and 4096-byte devices.
inline constexpr uint64_t kIoAlignment = 4096;

inline constexpr uint64_t align_down(uint64_t x, uint64_t a = kIoAlignment) { return x / a * a; }
inline constexpr uint64_t align_up(uint64_t x, uint64_t a = kIoAlignment) { return (x + a - 1) / a * a; }

/// Placement of one ByteRange in a slot: the aligned file extent [read_offset, read_offset+read_length)
/// is read to slot bytes [slot_offset, slot_offset+read_length); the range's own bytes start at
/// data_offset = slot_offset + (offset - read_offset). All units bytes.
struct RangePlacement {
  uint64_t read_offset = 0;
  uint64_t read_length = 0;
  uint64_t slot_offset = 0;
  uint64_t data_offset = 0;
};

/// Computes the placement of every range, in order (out is cleared first; no allocation once its
/// capacity suffices). Returns the slot bytes needed (a multiple of kIoAlignment). Zero-length ranges
/// get read_length 0.
inline uint64_t layout_slot(std::span<const ByteRange> ranges, std::vector<RangePlacement>& out) {
  out.clear();
  uint64_t pos = 0;
  for (const ByteRange& r : ranges) {
    RangePlacement p;
    p.read_offset = align_down(r.offset);
    p.read_length = r.length == 0 ? 0 : align_up(r.offset + r.length) - p.read_offset;
    p.slot_offset = pos;
    p.data_offset = pos + (r.offset - p.read_offset);
    out.push_back(p);
    pos += p.read_length;
  }
  return pos;
}

/// Slot bytes needed for `ranges` (same value layout_slot returns; allocates a scratch vector).
inline uint64_t slot_bytes_needed(std::span<const ByteRange> ranges) {
  std::vector<RangePlacement> tmp;
  return layout_slot(ranges, tmp);
}

/// Upper bound of slot_bytes_needed for `n_ranges` ranges of `payload_bytes` in total, whatever their
/// offsets: each range may straddle one extra alignment block on each side.
inline constexpr uint64_t slot_bytes_bound(uint64_t payload_bytes, uint64_t n_ranges) {
  return align_up(payload_bytes) + 2 * kIoAlignment * n_ranges;
}

}  // namespace moetier::offload
