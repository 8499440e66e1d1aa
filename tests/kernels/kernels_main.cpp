// main() of the CUDA kernel tests: runs doctest, then, when this process has no CUDA device (or the build
// has no CUDA), exits 77 so that meson reports the GPU tests as SKIP with the reason printed here. The
// cases that need no device (the registry, gemv_declines) still run first and must pass.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "kernels/gpu_backend.hpp"

int main(int argc, char** argv) {
  doctest::Context ctx(argc, argv);
  const int rc = ctx.run();
  if (ctx.shouldExit() || rc != 0) return rc;
  if (moetier::gpu::device_count() == 0) {
    std::printf("SKIP: the CUDA tests need a CUDA device (%s)\n", moetier::gpu::describe().c_str());
    return 77;
  }
  return 0;
}
