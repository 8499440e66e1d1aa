// Open-addressing hash indexes for vocabulary lookups (token text -> id, merge pair -> rank).
// Built once at load time; lookups never allocate. Both store 8 or 12 bytes per slot in one array,
// which keeps the 150k-entry vocabularies of current models cache-friendly (std::unordered_map costs a
// heap node and a pointer chase per entry).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace moetier::tokenizer {

/// 64-bit FNV-1a of a byte string.
inline uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

/// Text -> id over a fixed array of texts (the index stores ids, the texts stay in the caller's
/// array, which must outlive the index and not change).
class TextIndex {
 public:
  /// Prepares room for `n` texts.
  void reset(size_t n) {
    const size_t cap = std::bit_ceil(std::max<size_t>(16, n * 2));
    slots_.assign(cap, 0);
    mask_ = cap - 1;
  }
  /// Adds texts[id]; returns the id already holding that text, or -1 if it was new.
  int32_t insert(std::span<const std::string> texts, int32_t id) {
    const std::string_view s = texts[id];
    const uint64_t h = fnv1a64(s);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const uint64_t slot = slots_[i];
      if (slot == 0) {
        slots_[i] = (h & ~uint64_t(0xFFFFFFFF)) | (uint32_t(id) + 1);
        return -1;
      }
      const int32_t other = static_cast<int32_t>(uint32_t(slot) - 1);
      if ((slot >> 32) == (h >> 32) && texts[other] == s) return other;
    }
  }
  /// Id whose text equals `s`, or -1.
  int32_t find(std::span<const std::string> texts, std::string_view s) const {
    if (slots_.empty()) return -1;
    const uint64_t h = fnv1a64(s);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const uint64_t slot = slots_[i];
      if (slot == 0) return -1;
      const int32_t id = static_cast<int32_t>(uint32_t(slot) - 1);
      if ((slot >> 32) == (h >> 32) && texts[id] == s) return id;
    }
  }

 private:
  std::vector<uint64_t> slots_;  // high 32 bits: hash; low 32 bits: id + 1 (0 = empty)
  size_t mask_ = 0;
};

/// uint64 key -> int32 value; keys must not be UINT64_MAX. First insertion of a key wins.
class PairIndex {
 public:
  void reset(size_t n) {
    const size_t cap = std::bit_ceil(std::max<size_t>(16, n * 2));
    keys_.assign(cap, kEmpty);
    values_.assign(cap, 0);
    mask_ = cap - 1;
  }
  void try_insert(uint64_t key, int32_t value) {
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      if (keys_[i] == key) return;
      if (keys_[i] == kEmpty) {
        keys_[i] = key;
        values_[i] = value;
        return;
      }
    }
  }
  /// Value of `key`, or -1.
  int32_t find(uint64_t key) const {
    if (keys_.empty()) return -1;
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      if (keys_[i] == key) return values_[i];
      if (keys_[i] == kEmpty) return -1;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  size_t slot_of(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 20) & mask_; }
  std::vector<uint64_t> keys_;
  std::vector<int32_t> values_;
  size_t mask_ = 0;
};

}  // namespace moetier::tokenizer
