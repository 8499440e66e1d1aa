#include "scheduler/backend_registry.hpp"

#include <fmt/format.h>

#include <array>

#include "common/error.hpp"
#include "kernels/gpu_backend.hpp"

namespace moetier::sched {

// Factories, defined in each backend's file.
std::unique_ptr<DeviceBackend> make_sim_backend(const DeviceSpec& spec);
#ifdef MOETIER_HAVE_CUDA
std::unique_ptr<DeviceBackend> make_gpu_backend(const DeviceSpec& spec);  // gpu_backend_cuda.cpp
#endif

namespace {
// One line per device backend.
constexpr std::array kDeviceBackends{
    DeviceBackendEntry{"sim", "simulated device: host memory with a capacity, a paced copy engine and a stream thread computing with the CPU kernels", make_sim_backend},
#ifdef MOETIER_HAVE_CUDA
    DeviceBackendEntry{"gpu", "CUDA device: weights in their GGUF blocks in VRAM, CUDA FFN kernels on one stream", make_gpu_backend},
#endif
};
}  // namespace

std::span<const DeviceBackendEntry> device_backends() { return kDeviceBackends; }

int gpu_device_count() { return gpu::device_count(); }
bool gpu_compiled() { return gpu::compiled_with_cuda(); }

std::unique_ptr<DeviceBackend> make_device_backend(const DeviceSpec& spec) {
  std::string known;
  for (const DeviceBackendEntry& e : kDeviceBackends) {
    if (e.kind == spec.kind) return e.make(spec);
    known += fmt::format("{}{}", known.empty() ? "" : ", ", e.kind);
  }
  fail("no device backend \"{}\" in this build (registered: {})", spec.kind, known);
}

}  // namespace moetier::sched
