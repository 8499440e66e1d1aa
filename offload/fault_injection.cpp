// offload/fault_injection.cpp — ScriptedFaults (see fault_injection.hpp).
#include "offload/fault_injection.hpp"

#include <algorithm>

namespace moetier::offload {

int64_t ScriptedFaults::on_complete(const ReadOp& op, int64_t result) {
  ++n_reads_;
  if (transient_left_ > 0) {
    --transient_left_;
    ++n_transient_;
    return -transient_err_;
  }
  for (const ErrorRule& e : errors_) {
    if (e.file_index == op.file_index && e.offset >= op.offset && e.offset < op.offset + op.length) {
      ++n_errors_;
      return -e.err;
    }
  }
  if (result < 0) return result;
  for (const Truncation& t : truncations_) {
    if (t.file_index != op.file_index) continue;
    const uint64_t avail = op.offset >= t.size ? 0 : t.size - op.offset;
    if (static_cast<uint64_t>(result) > avail) {
      ++n_truncated_;
      result = static_cast<int64_t>(avail);
    }
  }
  if (short_every_ > 0 && result >= 2 && n_short_ < short_max_ && ++short_seen_ % short_every_ == 0) {
    ++n_short_;
    // Cut at ~3/8 of the read plus an odd number of bytes, so the cut is never block aligned.
    const int64_t cut = std::max<int64_t>(1, result * 3 / 8 - 1) | 1;
    return std::min(cut, result - 1);
  }
  return result;
}

uint64_t ScriptedFaults::file_size(uint32_t file_index, uint64_t actual) {
  for (const Truncation& t : truncations_)
    if (t.file_index == file_index) actual = std::min(actual, t.size);
  return actual;
}

}  // namespace moetier::offload
