#pragma once
// Host↔device copies through page-locked (pinned) host buffers.
//
// Tensors on the host live in ordinary pageable memory, which the GPU's copy engines cannot read.
// Given a pageable pointer, cudaMemcpy stages the bytes through the driver's own buffers and, for
// host → device, first synchronises the stream: every per-batch upload (the row index of a
// minibatch, the offsets of ragged sets) would stall the host until the GPU had drained its
// queue, and the host could never run ahead of the device. Copying through pinned buffers we own
// makes an upload a host memcpy plus a DMA the host queues and forgets, and lets a large copy
// overlap the host memcpy of one chunk with the DMA of the previous one.
//
// The buffers are a ring of `slots` pinned blocks of `slot_bytes` each, allocated once, on first
// use. Small copies share a slot; a copy larger than a slot goes through in slot-sized chunks.
// Each slot carries an event recorded after the last DMA that touched it, and a slot is reused
// only once that event has completed, so the host waits only when it is a whole ring ahead of the
// GPU. Plain C++ (no CUDA headers) so that tests can inspect the counters.
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace asbi::cuda {

// Where each copy lands in the ring: pure arithmetic, kept apart so it can be tested without a GPU.
class StagingRing {
 public:
  static constexpr std::size_t alignment = 256;  // keeps DMA sources on cache-line boundaries

  StagingRing(std::size_t slot_bytes, int slots);

  struct Place {
    int slot = 0;
    std::size_t offset = 0;  // byte offset of the copy inside the slot
    bool entered = false;    // the copy opened this slot: its previous DMAs must be complete first
  };
  // Room for `bytes` (1 ≤ bytes ≤ slot_bytes): after the previous copy in the current slot when it
  // fits there, else at the start of the next slot.
  Place take(std::size_t bytes);

  std::size_t slot_bytes() const { return slot_bytes_; }
  int slots() const { return slots_; }

 private:
  std::size_t slot_bytes_;
  int slots_;
  int current_ = -1;  // no slot entered yet
  std::size_t used_ = 0;
};

struct StagingStats {
  std::size_t pinned_bytes = 0;  // page-locked memory held; 0 when pinning failed (see below)
  std::int64_t uploads = 0;      // host → device copies made through the ring
  std::int64_t downloads = 0;    // device → host copies made through the ring
  std::int64_t staged_bytes = 0;  // bytes those copies moved
  std::int64_t slot_waits = 0;    // times the host found the slot it needed still in flight
  std::string unpinned_reason;    // why copies go straight through cudaMemcpy, or ""
};

class HostStaging {
 public:
  explicit HostStaging(std::size_t slot_bytes = std::size_t{4} << 20, int slots = 4);
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;
  ~HostStaging();  // frees the pinned blocks and events (errors ignored: the driver may be gone)

  // host → device. Returns as soon as `host` may be reused; the device sees the bytes in stream
  // order, before any work queued after this call.
  void upload(void* device_dst, const void* host, std::size_t bytes);
  // device → host, in stream order after all work queued so far. Returns when `host` holds them.
  void download(void* host, const void* device_src, std::size_t bytes);

  StagingStats stats() const;

 private:
  struct Slot {
    char* pinned = nullptr;
    void* done = nullptr;  // cudaEvent_t, recorded after the slot's latest DMA
  };
  bool ready_locked();  // allocates the ring on first use; false when pinning is not possible
  char* enter_locked(const StagingRing::Place& place);  // waits for the slot when it was entered
  void record_locked(int slot);
  void wait_locked(int slot);

  mutable std::mutex mutex_;
  StagingRing ring_;
  std::vector<Slot> slots_;
  bool tried_ = false;
  StagingStats stats_;
};

// The staging ring behind the CUDA backend's copies. Never destroyed, like the device pool.
HostStaging& host_staging();

}  // namespace asbi::cuda
