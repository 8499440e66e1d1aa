// CUDA runtime wrappers (kernels/cuda_runtime.hpp).
#include "kernels/cuda_runtime.hpp"

#include <cuda_runtime.h>

#include <string>

#include "common/error.hpp"
#include "kernels/cuda_check.hpp"

namespace moetier::gpu {

void cuda_check(int code, std::string_view what) {
  if (code == cudaSuccess) return;
  const auto e = static_cast<cudaError_t>(code);
  // The error is reported once: clear it from the thread's last-error slot (sticky errors stay in the
  // context and are reported again by the next call).
  (void)cudaGetLastError();
  throw Error(std::string(what) + ": CUDA error " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

namespace {
cudaStream_t cs(const Stream& s) { return static_cast<cudaStream_t>(s.handle()); }
}  // namespace

void set_device(int index) { cuda_check(cudaSetDevice(index), "selecting CUDA device " + std::to_string(index)); }

MemInfo mem_info() {
  size_t free_b = 0, total_b = 0;
  cuda_check(cudaMemGetInfo(&free_b, &total_b), "querying device memory");
  return MemInfo{free_b, total_b};
}

std::string device_name() {
  int dev = 0;
  cuda_check(cudaGetDevice(&dev), "querying the current CUDA device");
  cudaDeviceProp p{};
  cuda_check(cudaGetDeviceProperties(&p, dev), "querying CUDA device properties");
  return p.name;
}

// --- Stream / Event ----------------------------------------------------------------------------------------

Stream::Stream() {
  cudaStream_t s = nullptr;
  cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "creating a CUDA stream");
  s_ = s;
}

Stream::~Stream() {
  if (s_) (void)cudaStreamDestroy(static_cast<cudaStream_t>(s_));
}

Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    if (s_) (void)cudaStreamDestroy(static_cast<cudaStream_t>(s_));
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}

void Stream::synchronize(std::string_view what) const { cuda_check(cudaStreamSynchronize(cs(*this)), what); }

Event::Event() {
  cudaEvent_t e = nullptr;
  cuda_check(cudaEventCreate(&e), "creating a CUDA event");
  e_ = e;
}

Event::~Event() {
  if (e_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e_));
}

Event& Event::operator=(Event&& o) noexcept {
  if (this != &o) {
    if (e_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e_));
    e_ = std::exchange(o.e_, nullptr);
  }
  return *this;
}

void Event::record(const Stream& s) {
  cuda_check(cudaEventRecord(static_cast<cudaEvent_t>(e_), cs(s)), "recording a CUDA event");
}

void Event::synchronize(std::string_view what) const {
  cuda_check(cudaEventSynchronize(static_cast<cudaEvent_t>(e_)), what);
}

bool Event::done() const { return cudaEventQuery(static_cast<cudaEvent_t>(e_)) == cudaSuccess; }

float Event::elapsed_ms_since(const Event& start) const {
  float ms = 0;
  cuda_check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.e_), static_cast<cudaEvent_t>(e_)),
             "reading CUDA event times");
  return ms;
}

// --- DevicePool / DeviceBuffer --------------------------------------------------------------------------------

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    release();
    pool_ = std::exchange(o.pool_, nullptr);
    ptr_ = std::exchange(o.ptr_, nullptr);
    size_ = std::exchange(o.size_, 0);
    charged_ = std::exchange(o.charged_, 0);
  }
  return *this;
}

void DeviceBuffer::release() {
  if (ptr_) {
    (void)cudaFree(ptr_);
    if (pool_) pool_->used_ -= charged_;
  }
  pool_ = nullptr;
  ptr_ = nullptr;
  size_ = 0;
  charged_ = 0;
}

DeviceBuffer DevicePool::allocate(uint64_t bytes, std::string_view what, uint64_t charged) {
  const std::string for_what = what.empty() ? std::string() : " for " + std::string(what);
  if (bytes == 0) throw Error(device_ + ": device allocation of 0 bytes" + for_what);
  if (charged > bytes) charged = bytes;
  if (charged > capacity_ - used_)  // used_ <= capacity_ always
    throw Error(device_ + ": out of device memory" + for_what + ": " + std::to_string(charged) + " bytes requested, " +
                std::to_string(used_) + " in use, budget " + std::to_string(capacity_));
  void* p = nullptr;
  cuda_check(cudaMalloc(&p, static_cast<size_t>(bytes)),
             device_ + ": allocating " + std::to_string(bytes) + " bytes of device memory" + for_what);
  DeviceBuffer b;
  b.pool_ = this;
  b.ptr_ = p;
  b.size_ = bytes;
  b.charged_ = charged;
  used_ += charged;
  if (used_ > peak_) peak_ = used_;
  return b;
}

// --- PinnedBuffer ---------------------------------------------------------------------------------------------

PinnedBuffer::PinnedBuffer(uint64_t bytes, std::string_view what) {
  if (bytes == 0) throw Error("pinned host allocation of 0 bytes for " + std::string(what));
  void* p = nullptr;
  cuda_check(cudaMallocHost(&p, static_cast<size_t>(bytes)),
             "allocating " + std::to_string(bytes) + " bytes of pinned host memory for " + std::string(what));
  ptr_ = p;
  size_ = bytes;
}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) (void)cudaFreeHost(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

PinnedBuffer::~PinnedBuffer() {
  if (ptr_) (void)cudaFreeHost(ptr_);
}

// --- copies ---------------------------------------------------------------------------------------------------

void copy_h2d_async(void* dst, const void* src, uint64_t bytes, const Stream& s, std::string_view what) {
  if (bytes == 0) return;
  cuda_check(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice, cs(s)), what);
}

void copy_d2h_async(void* dst, const void* src, uint64_t bytes, const Stream& s, std::string_view what) {
  if (bytes == 0) return;
  cuda_check(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost, cs(s)), what);
}

void copy_d2d_async(void* dst, const void* src, uint64_t bytes, const Stream& s, std::string_view what) {
  if (bytes == 0) return;
  cuda_check(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice, cs(s)), what);
}

}  // namespace moetier::gpu
