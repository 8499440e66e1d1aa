// Counts CUDA devices; returns 0 when no driver or device is present (never throws).
#include <cuda_runtime.h>

namespace moetier::gpu {

int cuda_probe_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

}  // namespace moetier::gpu
