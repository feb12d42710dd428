// Copies through a ring of pinned host buffers (see host_staging.hpp). Host code only, compiled by
// the host compiler against the CUDA runtime; every DMA is queued on the legacy default stream, in
// order with the kernels.
#include "cuda/host_staging.hpp"

#include <algorithm>
#include <cstring>

#include "core/error.hpp"
#include "cuda/check.cuh"

namespace asbi::cuda {

StagingRing::StagingRing(std::size_t slot_bytes, int slots) : slot_bytes_(slot_bytes), slots_(slots) {
  // Two slots at least: a chunked download copies one slot out while the next one fills.
  if (slots_ < 2 || slot_bytes_ < alignment || slot_bytes_ % alignment != 0)
    throw core::ValueError(core::str("cuda staging: need at least 2 slots of a multiple of ",
                                     alignment, " bytes, got ", slots_, " of ", slot_bytes_));
}

StagingRing::Place StagingRing::take(std::size_t bytes) {
  if (bytes == 0 || bytes > slot_bytes_)
    throw core::ValueError(core::str("cuda staging: a copy of ", bytes,
                                     " bytes does not fit a slot of ", slot_bytes_));
  const std::size_t offset = (used_ + alignment - 1) / alignment * alignment;
  if (current_ >= 0 && offset + bytes <= slot_bytes_) {
    used_ = offset + bytes;
    return {current_, offset, false};
  }
  current_ = (current_ + 1) % slots_;
  used_ = bytes;
  return {current_, 0, true};
}

HostStaging::HostStaging(std::size_t slot_bytes, int slots) : ring_(slot_bytes, slots) {}

HostStaging::~HostStaging() {
  for (Slot& s : slots_) {
    if (s.done) cudaEventDestroy(static_cast<cudaEvent_t>(s.done));
    if (s.pinned) cudaFreeHost(s.pinned);
  }
}

bool HostStaging::ready_locked() {
  if (tried_) return !slots_.empty();
  tried_ = true;
  slots_.resize(static_cast<std::size_t>(ring_.slots()));
  for (Slot& s : slots_) {
    cudaEvent_t event = nullptr;
    cudaError_t status = cudaHostAlloc(reinterpret_cast<void**>(&s.pinned), ring_.slot_bytes(),
                                       cudaHostAllocDefault);
    if (status == cudaSuccess) status = cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
    s.done = event;
    if (status != cudaSuccess) {
      // Containers with a small locked-memory limit refuse pinned memory; copies still work
      // through cudaMemcpy, only without the overlap, so that is what they fall back to.
      cudaGetLastError();
      stats_.unpinned_reason = core::str("cudaHostAlloc of ", ring_.slot_bytes(),
                                         " bytes failed: ", cudaGetErrorString(status));
      for (Slot& t : slots_) {
        if (t.done) cudaEventDestroy(static_cast<cudaEvent_t>(t.done));
        if (t.pinned) cudaFreeHost(t.pinned);
      }
      slots_.clear();
      stats_.pinned_bytes = 0;
      return false;
    }
    stats_.pinned_bytes += ring_.slot_bytes();
  }
  return true;
}

void HostStaging::wait_locked(int slot) {
  auto event = static_cast<cudaEvent_t>(slots_[static_cast<std::size_t>(slot)].done);
  const cudaError_t status = cudaEventQuery(event);
  if (status == cudaSuccess) return;
  if (status != cudaErrorNotReady) ASBI_CUDA_CHECK(status);
  ++stats_.slot_waits;
  ASBI_CUDA_CHECK(cudaEventSynchronize(event));
}

char* HostStaging::enter_locked(const StagingRing::Place& place) {
  if (place.entered) wait_locked(place.slot);
  return slots_[static_cast<std::size_t>(place.slot)].pinned + place.offset;
}

void HostStaging::record_locked(int slot) {
  ASBI_CUDA_CHECK(
      cudaEventRecord(static_cast<cudaEvent_t>(slots_[static_cast<std::size_t>(slot)].done), 0));
}

void HostStaging::upload(void* device_dst, const void* host, std::size_t bytes) {
  if (bytes == 0) return;
  std::lock_guard lock(mutex_);
  if (!ready_locked()) {
    ASBI_CUDA_CHECK(cudaMemcpy(device_dst, host, bytes, cudaMemcpyHostToDevice));
    return;
  }
  const auto* src = static_cast<const char*>(host);
  auto* dst = static_cast<char*>(device_dst);
  for (std::size_t done = 0; done < bytes;) {
    const std::size_t n = std::min(bytes - done, ring_.slot_bytes());
    const StagingRing::Place place = ring_.take(n);
    char* pinned = enter_locked(place);
    std::memcpy(pinned, src + done, n);
    ASBI_CUDA_CHECK(cudaMemcpyAsync(dst + done, pinned, n, cudaMemcpyHostToDevice, 0));
    record_locked(place.slot);
    done += n;
  }
  ++stats_.uploads;
  stats_.staged_bytes += static_cast<std::int64_t>(bytes);
}

void HostStaging::download(void* host, const void* device_src, std::size_t bytes) {
  if (bytes == 0) return;
  std::lock_guard lock(mutex_);
  if (!ready_locked()) {
    ASBI_CUDA_CHECK(cudaMemcpy(host, device_src, bytes, cudaMemcpyDeviceToHost));
    return;
  }
  const auto* src = static_cast<const char*>(device_src);
  auto* dst = static_cast<char*>(host);
  // Chunk k's DMA is queued before chunk k − 1 is copied out of its slot, so the two overlap.
  struct Pending {
    int slot;
    const char* pinned;
    std::size_t at, n;
  };
  auto copy_out = [&](const Pending& p) {
    wait_locked(p.slot);
    std::memcpy(dst + p.at, p.pinned, p.n);
  };
  Pending pending{-1, nullptr, 0, 0};
  for (std::size_t done = 0; done < bytes;) {
    const std::size_t n = std::min(bytes - done, ring_.slot_bytes());
    const StagingRing::Place place = ring_.take(n);
    char* pinned = enter_locked(place);
    ASBI_CUDA_CHECK(cudaMemcpyAsync(pinned, src + done, n, cudaMemcpyDeviceToHost, 0));
    record_locked(place.slot);
    if (pending.slot >= 0) copy_out(pending);
    pending = {place.slot, pinned, done, n};
    done += n;
  }
  copy_out(pending);
  ++stats_.downloads;
  stats_.staged_bytes += static_cast<std::int64_t>(bytes);
}

StagingStats HostStaging::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

HostStaging& host_staging() {
  static HostStaging* staging = new HostStaging;
  return *staging;
}

}  // namespace asbi::cuda
