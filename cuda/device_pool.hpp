#pragma once
// A caching allocator for device memory. cudaMalloc and cudaFree cost tens of microseconds and
// cudaFree synchronises the whole device, so blocks a tensor gives back are kept in size-class
// bins and handed to the next request of the same class instead of going back to the driver.
//
// Size classes: multiples of 512 bytes up to 1 MiB; above that, eight classes per power of two
// (at most 12.5% slack). A request takes a cached block of exactly its class or a fresh one.
//
// Blocks are reused in stream order: all of asbi's CUDA work is queued on the legacy default
// stream, so a block freed while a kernel still reads it is rewritten only by work queued after
// that kernel. Plain C++ (no CUDA headers) so tests can inspect the counters.
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace asbi::cuda {

struct PoolStats {
  std::size_t reserved_bytes = 0;       // held from the driver: in use plus cached
  std::size_t in_use_bytes = 0;         // handed out and not yet returned (rounded sizes)
  std::size_t cached_bytes = 0;         // returned and kept for reuse
  std::size_t peak_reserved_bytes = 0;  // highest reserved_bytes so far
  std::int64_t driver_allocations = 0;  // cudaMalloc calls that succeeded
  std::int64_t cache_hits = 0;          // requests served from the cache
};

class DevicePool {
 public:
  DevicePool() = default;
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;
  ~DevicePool();  // returns cached blocks; blocks still in use are left to the driver

  // On a driver failure, drops the cache and retries once, then throws core::DeviceError naming
  // the size and the device's free and total memory.
  void* allocate(std::size_t bytes);
  // `ptr` must come from allocate; `bytes` is accepted for symmetry with core::Backend.
  void deallocate(void* ptr, std::size_t bytes);
  // Returns every cached block to the driver (synchronises the device, as cudaFree does).
  void release_cached();
  PoolStats stats() const;

  static std::size_t size_class(std::size_t bytes);

 private:
  void release_cached_locked();

  mutable std::mutex mutex_;
  std::unordered_map<void*, std::size_t> live_;               // block → its size class
  std::unordered_map<std::size_t, std::vector<void*>> bins_;  // size class → cached blocks
  PoolStats stats_;
};

// The pool behind asbi::cuda::backend(). Never destroyed: tensors freed during static
// destruction still find it, and the driver reclaims everything at exit.
DevicePool& device_pool();

}  // namespace asbi::cuda
