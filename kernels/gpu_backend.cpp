#include "kernels/gpu_backend.hpp"

#include <fmt/format.h>

namespace moetier::gpu {

#ifdef MOETIER_HAVE_CUDA
int cuda_probe_device_count();  // cuda_probe.cu
bool compiled_with_cuda() { return true; }
int device_count() { return cuda_probe_device_count(); }
#else
bool compiled_with_cuda() { return false; }
int device_count() { return 0; }
#endif

std::string describe() {
  if (!compiled_with_cuda()) return "no CUDA in this build";
  return fmt::format("CUDA: {} device(s)", device_count());
}

}  // namespace moetier::gpu
