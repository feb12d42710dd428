#pragma once
// Memory you can account for. Every byte of tensor storage, on every device, is allocated through
// `allocate` and counted here, so tests and benchmarks can assert what a step costs.
//
// Two lifetimes exist. Parameters, datasets and results are *owned* buffers, freed when their last
// tensor goes. Per-step temporaries (op outputs and gradients while a tape records) come from an
// *arena*: a bump allocator that is rewound, not freed, when the step ends, so a steady-state
// training step allocates nothing from the system.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/types.hpp"

namespace asbi::core {

struct MemoryStats {
  std::int64_t live_bytes = 0;       // allocated and not yet freed
  std::int64_t peak_bytes = 0;       // highest live_bytes since start or the last reset_peak
  std::int64_t allocations = 0;      // number of allocate() calls since start
  std::int64_t allocated_bytes = 0;  // bytes requested by those calls, in total
};

MemoryStats memory_stats(Device device = Device::cpu);
void reset_peak_memory(Device device = Device::cpu);

// Counted raw allocation; CPU memory is 64-byte aligned (one cache line, one AVX-512 vector).
void* allocate(std::size_t bytes, Device device);
void deallocate(void* ptr, std::size_t bytes, Device device);

// A bump allocator made of a few large blocks that it keeps for reuse.
class Arena {
 public:
  struct Mark {
    std::size_t block = 0;
    std::size_t offset = 0;
  };
  static constexpr std::size_t alignment = 64;

  explicit Arena(Device device, std::size_t block_bytes = std::size_t{1} << 22);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  void* allocate(std::size_t bytes);
  Mark mark() const { return {current_, offset_}; }
  void rewind(Mark m);  // frees everything allocated after `m`, keeps the blocks
  void reset() { rewind({}); }

  Device device() const { return device_; }
  std::size_t used_bytes() const;      // bytes handed out since the last reset
  std::size_t capacity_bytes() const;  // bytes held in blocks
  std::size_t high_water_bytes() const { return high_water_; }

 private:
  struct Block {
    char* data;
    std::size_t bytes;
  };
  Device device_;
  std::size_t block_bytes_;
  std::vector<Block> blocks_;
  std::size_t current_ = 0;  // index of the block being filled
  std::size_t offset_ = 0;   // bytes used in it
  std::size_t high_water_ = 0;
};

// This thread's arena for `device`, created on first use and kept until the thread ends.
Arena& thread_arena(Device device);

// While an ArenaScope lives, temporaries created on this thread (Tensor::scratch) come from
// thread_arena; when it ends, the arena is rewound to where it stood when the scope began.
class ArenaScope {
 public:
  ArenaScope();
  ~ArenaScope();
  ArenaScope(const ArenaScope&) = delete;
  ArenaScope& operator=(const ArenaScope&) = delete;
  void rewind();  // drop the temporaries made so far in this scope
  static bool active();
  static std::uint32_t current_depth();  // scopes open on this thread
  std::uint32_t depth() const { return depth_; }
  // Identifies the scope a temporary was made in, so that a temporary read after its scope was
  // rewound is reported instead of silently read (see Tensor::check_alive).
  struct Stamp {
    std::uint32_t depth = 0;        // 0: not a temporary
    std::uint32_t generation = 0;   // rewinds of the scope at that depth so far
  };
  static Stamp stamp();
  static bool alive(Stamp s);

 private:
  Arena::Mark cpu_mark_;
  Arena::Mark cuda_mark_;
  bool had_cuda_;
  std::uint32_t depth_;  // this scope's nesting level (1 = outermost)
};

}  // namespace asbi::core
