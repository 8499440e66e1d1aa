// Memory read bandwidth measured in the same run (STREAM-like "read" kernel): the ceiling that
// benchmarks and `moetier bench` divide achieved bytes/s by to print roofline ratios.
#pragma once

#include "scheduler/thread_pool.hpp"

#include <cstddef>

namespace moetier::sched {

/// Read bandwidth in GB/s (1e9 bytes/s) of `pool`'s workers streaming a `bytes`-long buffer (rounded
/// up to 4 KiB) that they first touched themselves (so pages are local to each worker's NUMA node).
/// Each rep splits the buffer with the pool's static partition (4 KiB aligned) and sums it with
/// AVX-512 or AVX2 loads when the CPU has them (portable code otherwise); the best of `n_reps` reps is
/// returned. Allocates the buffer (throws std::bad_alloc); takes about n_reps * bytes / bandwidth
/// seconds. Throws moetier::Error if bytes == 0 or the checksum of the read data is wrong.
double measure_read_bandwidth_gbps(ThreadPool& pool, size_t bytes, int n_reps = 5);

}  // namespace moetier::sched
