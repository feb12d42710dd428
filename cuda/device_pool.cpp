// The caching device allocator (see device_pool.hpp). Host code only, compiled by the host
// compiler against the CUDA runtime.
#include "cuda/device_pool.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <bit>

#include "core/error.hpp"

namespace asbi::cuda {
namespace {

constexpr std::size_t small_step = 512;
constexpr std::size_t small_limit = std::size_t{1} << 20;

double mib(std::size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace

std::size_t DevicePool::size_class(std::size_t bytes) {
  if (bytes <= small_limit)
    return std::max<std::size_t>(1, (bytes + small_step - 1) / small_step) * small_step;
  const std::size_t step = std::bit_floor(bytes) / 8;
  return (bytes + step - 1) / step * step;
}

DevicePool::~DevicePool() {
  // Errors are ignored: at exit the driver may already be unloading, and it frees all anyway.
  for (auto& [size, blocks] : bins_)
    for (void* p : blocks) cudaFree(p);
}

void* DevicePool::allocate(std::size_t bytes) {
  const std::size_t size = size_class(bytes);
  std::lock_guard lock(mutex_);
  if (auto it = bins_.find(size); it != bins_.end() && !it->second.empty()) {
    void* p = it->second.back();  // the most recently freed block: likeliest still in L2
    it->second.pop_back();
    live_.emplace(p, size);
    stats_.in_use_bytes += size;
    stats_.cached_bytes -= size;
    ++stats_.cache_hits;
    return p;
  }
  void* p = nullptr;
  cudaError_t status = cudaMalloc(&p, size);
  if (status == cudaErrorMemoryAllocation && stats_.cached_bytes > 0) {
    cudaGetLastError();
    release_cached_locked();
    status = cudaMalloc(&p, size);
  }
  if (status != cudaSuccess) {
    cudaGetLastError();
    std::size_t free_bytes = 0, total_bytes = 0;
    const bool have_info = cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess;
    cudaGetLastError();
    throw core::DeviceError(core::str(
        "cuda backend: cannot allocate ", bytes, " bytes (", mib(size),
        " MiB block): ", cudaGetErrorString(status), "; ",
        have_info
            ? core::str("device has ", mib(free_bytes), " MiB free of ", mib(total_bytes), " MiB, ")
            : std::string(),
        "asbi holds ", mib(stats_.in_use_bytes), " MiB in live tensors"));
  }
  live_.emplace(p, size);
  stats_.reserved_bytes += size;
  stats_.in_use_bytes += size;
  stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  ++stats_.driver_allocations;
  return p;
}

void DevicePool::deallocate(void* ptr, std::size_t) {
  if (!ptr) return;
  std::lock_guard lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end())
    throw core::DeviceError(core::str("cuda backend: deallocate of ", ptr,
                                      ", which this pool did not hand out (or freed twice)"));
  const std::size_t size = it->second;
  live_.erase(it);
  bins_[size].push_back(ptr);
  stats_.in_use_bytes -= size;
  stats_.cached_bytes += size;
}

void DevicePool::release_cached() {
  std::lock_guard lock(mutex_);
  release_cached_locked();
}

void DevicePool::release_cached_locked() {
  for (auto& [size, blocks] : bins_) {
    for (void* p : blocks) {
      cudaFree(p);  // a failure here leaves nothing to recover; the block is forgotten either way
      stats_.reserved_bytes -= size;
      stats_.cached_bytes -= size;
    }
    blocks.clear();
  }
  cudaGetLastError();
}

PoolStats DevicePool::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

DevicePool& device_pool() {
  static DevicePool* pool = new DevicePool;
  return *pool;
}

}  // namespace asbi::cuda
