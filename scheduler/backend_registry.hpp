// The table of device backends (gpu:N, sim:N): a kind name, what it is, and a factory. Adding a device
// backend is one new file (its DeviceBackend and factory) plus one registration line in
// backend_registry.cpp. The CPU backend is not in the table: it is always there.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "scheduler/expert_backend.hpp"
#include "scheduler/linear_exec.hpp"

namespace moetier::sched {

/// What to open: "sim" or "gpu", device index, memory, copy rate.
struct DeviceSpec {
  std::string kind = "sim";
  int32_t index = 0;
  uint64_t capacity_bytes = 0;  ///< device memory the backend may use (the VRAM budget), bytes
  double h2d_gbps = 24.0;       ///< sim: host -> device copy rate, GB/s (PCIe 4.0 x16 ~ 24); 0 = unpaced
  /// sim: smallest routed group the prefill GEMM takes, the model's LinearExec::gemm_min_tokens() (the
  /// simulated device computes with the CPU kernels and must make the same choice to give the same bits).
  int64_t gemm_min_tokens = LinearExec::kDefaultGemmMinTokens;
};

using DeviceFactory = std::unique_ptr<DeviceBackend> (*)(const DeviceSpec&);

struct DeviceBackendEntry {
  std::string_view kind;         ///< "sim", "gpu"
  std::string_view description;  ///< one line for --help and errors
  DeviceFactory make;
};

/// The registered device backends, in registration order.
std::span<const DeviceBackendEntry> device_backends();

/// CUDA devices usable at run time (kernels/gpu_backend.hpp; 0 without CUDA, a driver or a device), and
/// whether this binary was built with the CUDA kernels: how the runtime learns what gpu:N tiers exist.
int gpu_device_count();
bool gpu_compiled();

/// Opens `spec`. Throws moetier::Error for an unknown kind (naming the registered ones) or when the
/// backend cannot open the device (its message).
std::unique_ptr<DeviceBackend> make_device_backend(const DeviceSpec& spec);

}  // namespace moetier::sched
