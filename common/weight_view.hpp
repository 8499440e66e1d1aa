// Weight views with their memory kind in the type. A view is a 2-D weight matrix W [n_out, n_in] in some
// ggml type that lives somewhere else (mmapped GGUF bytes, an expert cache slot, device memory); views
// never own memory. The memory kind (host, pinned host, device) is a template parameter, so a view of
// device memory cannot be handed to a CPU kernel: CPU code takes HostWeight / HostFfn, and only the
// backend that owns a device buffer can look inside it (TensorRT-LLM's MemoryType idea, see
// ../shared/DESIGN.md). Pinned host memory is host-readable: as_host() converts it explicitly.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/ggml_type.hpp"

namespace moetier {

/// Where the bytes a view points at live.
enum class MemoryKind : uint8_t {
  Host,        ///< pageable host memory (mmap, heap, expert cache slots): CPU kernels read it
  PinnedHost,  ///< page-locked host memory (staging for copies to a device): CPU-readable
  Device,      ///< accelerator memory (CUDA, or the simulated device): only its backend reads it
};

/// "host", "pinned", "device".
constexpr const char* memory_kind_name(MemoryKind k) {
  return k == MemoryKind::Host ? "host" : k == MemoryKind::PinnedHost ? "pinned" : "device";
}

/// W [n_out, n_in] of `type` in memory of kind K: row o starts at data + o * row_bytes
/// (row_bytes = ggml_row_bytes(type, n_in)).
template <MemoryKind K>
struct WeightView {
  static constexpr MemoryKind kind = K;
  GgmlType type = GgmlType::F32;
  const std::byte* data = nullptr;
  int64_t n_out = 0;
  int64_t n_in = 0;
  uint64_t row_bytes = 0;
  bool valid() const { return data != nullptr; }
  uint64_t bytes() const { return row_bytes * static_cast<uint64_t>(n_out); }
  /// The same shape and type over other bytes of kind K2 (e.g. a device copy of a host weight).
  template <MemoryKind K2>
  WeightView<K2> rebased(const std::byte* new_data) const {
    return WeightView<K2>{type, new_data, n_out, n_in, row_bytes};
  }
};

using HostWeight = WeightView<MemoryKind::Host>;
using PinnedWeight = WeightView<MemoryKind::PinnedHost>;
using DeviceWeight = WeightView<MemoryKind::Device>;

/// Pinned host memory is host memory: the explicit conversion CPU code may use.
inline HostWeight as_host(const PinnedWeight& w) { return w.rebased<MemoryKind::Host>(w.data); }

/// One SwiGLU FFN (an expert, a shared expert or a dense FFN): out = down(act(gate x) * up x), with
/// optional biases (gpt-oss). Biases are small f32 vectors kept in host memory for every kind.
template <MemoryKind K>
struct FfnView {
  WeightView<K> gate, up, down;      // [n_ff, n_embd], [n_ff, n_embd], [n_embd, n_ff]
  const float* gate_bias = nullptr;  // [n_ff] or nullptr
  const float* up_bias = nullptr;    // [n_ff] or nullptr
  const float* down_bias = nullptr;  // [n_embd] or nullptr
  /// gate + up + down bytes.
  uint64_t bytes() const { return gate.bytes() + up.bytes() + down.bytes(); }
};

using HostFfn = FfnView<MemoryKind::Host>;
using DeviceFfn = FfnView<MemoryKind::Device>;

}  // namespace moetier
