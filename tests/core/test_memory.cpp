// Memory accounting and the per-step arena.
#include <gtest/gtest.h>

#include <cstdint>
#include <thread>
#include <vector>

#include "core/backend.hpp"
#include "core/memory.hpp"
#include "core/tensor.hpp"

namespace asbi::core {
namespace {

bool aligned64(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; }

TEST(Memory, CountersFollowTensorLifetime) {
  const MemoryStats start = memory_stats();
  {
    Tensor t = Tensor::empty({1000}, DType::f64);
    const MemoryStats during = memory_stats();
    EXPECT_EQ(during.allocations, start.allocations + 1);
    EXPECT_EQ(during.allocated_bytes, start.allocated_bytes + 8000);
    EXPECT_EQ(during.live_bytes, start.live_bytes + 8000);
    EXPECT_GE(during.peak_bytes, during.live_bytes);
    Tensor shared = t;  // a second handle: no new storage
    t = Tensor();
    EXPECT_EQ(memory_stats().live_bytes, during.live_bytes);
  }
  const MemoryStats end = memory_stats();
  EXPECT_EQ(end.live_bytes, start.live_bytes);
  EXPECT_EQ(end.allocations, start.allocations + 1);  // a count of calls, never decreasing
  EXPECT_EQ(end.allocated_bytes, start.allocated_bytes + 8000);
}

TEST(Memory, EmptyTensorsStillGetADistinctCountedPointer) {
  const MemoryStats start = memory_stats();
  Tensor a = Tensor::empty({0}), b = Tensor::empty({0, 4});
  EXPECT_TRUE(a.defined());
  EXPECT_NE(a.raw(), b.raw());
  EXPECT_EQ(memory_stats().allocations, start.allocations + 2);
  a = b = Tensor();
  EXPECT_EQ(memory_stats().live_bytes, start.live_bytes);
}

TEST(Memory, PeakTracksTheHighestLiveBytesUntilReset) {
  reset_peak_memory();
  const MemoryStats start = memory_stats();
  EXPECT_EQ(start.peak_bytes, start.live_bytes);
  {
    Tensor big = Tensor::empty({1 << 18});  // 1 MiB
    Tensor small = Tensor::empty({16});
  }
  const MemoryStats after = memory_stats();
  EXPECT_EQ(after.live_bytes, start.live_bytes);
  EXPECT_EQ(after.peak_bytes, start.live_bytes + (1 << 20) + 64);
  reset_peak_memory();
  EXPECT_EQ(memory_stats().peak_bytes, memory_stats().live_bytes);
}

TEST(Memory, RawAllocationsAreAlignedAndCounted) {
  const MemoryStats start = memory_stats();
  for (std::size_t bytes : {1u, 3u, 63u, 64u, 65u, 1000u}) {
    void* p = allocate(bytes, Device::cpu);
    EXPECT_TRUE(aligned64(p)) << bytes;
    EXPECT_EQ(memory_stats().live_bytes, start.live_bytes + static_cast<std::int64_t>(bytes));
    deallocate(p, bytes, Device::cpu);
  }
  deallocate(nullptr, 10, Device::cpu);  // a no-op, like free(nullptr)
  EXPECT_EQ(memory_stats().live_bytes, start.live_bytes);
  EXPECT_EQ(memory_stats().allocations, start.allocations + 6);
}

TEST(Memory, TensorStorageIsAligned) {
  for (std::int64_t n : {1, 3, 17, 1000}) {
    EXPECT_TRUE(aligned64(Tensor::empty({n}).raw()));
    EXPECT_TRUE(aligned64(Tensor::empty({n}, DType::f64).raw()));
  }
}

// --- Arena ---------------------------------------------------------------------------------------

TEST(Arena, BumpsAlignedAndRewindReusesMemory) {
  const MemoryStats start = memory_stats();
  Arena arena(Device::cpu, 4096);
  EXPECT_EQ(arena.capacity_bytes(), 0u);  // blocks come on first use
  void* a = arena.allocate(10);
  void* b = arena.allocate(1);
  void* c = arena.allocate(64);
  EXPECT_EQ(memory_stats().allocations, start.allocations + 1);  // one block
  EXPECT_EQ(arena.capacity_bytes(), 4096u);
  for (void* p : {a, b, c}) EXPECT_TRUE(aligned64(p));
  EXPECT_EQ(static_cast<char*>(b) - static_cast<char*>(a), 64);
  EXPECT_EQ(static_cast<char*>(c) - static_cast<char*>(b), 64);
  EXPECT_EQ(arena.used_bytes(), 192u);

  const Arena::Mark m = arena.mark();
  void* d = arena.allocate(100);
  EXPECT_EQ(arena.used_bytes(), 192u + 128u);
  arena.rewind(m);
  EXPECT_EQ(arena.used_bytes(), 192u);
  EXPECT_EQ(arena.allocate(100), d);  // the same bytes again
  arena.reset();
  EXPECT_EQ(arena.used_bytes(), 0u);
  EXPECT_EQ(arena.allocate(8), a);
  EXPECT_EQ(arena.high_water_bytes(), 320u);
  EXPECT_EQ(memory_stats().allocations, start.allocations + 1);
}

TEST(Arena, GrowsByBlocksAndKeepsThemAfterReset) {
  const MemoryStats start = memory_stats();
  {
    Arena arena(Device::cpu, 1024);
    void* first = arena.allocate(1000);
    void* second = arena.allocate(1000);  // does not fit the first block: a new one
    void* huge = arena.allocate(10000);   // larger than any block: a block of its own size
    EXPECT_TRUE(aligned64(second) && aligned64(huge));
    EXPECT_EQ(memory_stats().allocations, start.allocations + 3);
    const std::size_t capacity = arena.capacity_bytes();
    EXPECT_GE(capacity, 1024u + 2048u + 10048u);
    // The same sequence after a reset lands on the same addresses with no new blocks.
    arena.reset();
    EXPECT_EQ(arena.allocate(1000), first);
    EXPECT_EQ(arena.allocate(1000), second);
    EXPECT_EQ(arena.allocate(10000), huge);
    EXPECT_EQ(arena.capacity_bytes(), capacity);
    EXPECT_EQ(memory_stats().allocations, start.allocations + 3);
    // Writing the whole huge allocation is in bounds (ASan checks this).
    std::fill_n(static_cast<char*>(huge), 10000, char{1});
  }
  EXPECT_EQ(memory_stats().live_bytes, start.live_bytes);  // the destructor frees every block
}

TEST(ArenaScope, ScratchIsOwnedOutsideAScope) {
  EXPECT_FALSE(ArenaScope::active());
  const MemoryStats start = memory_stats();
  Tensor t = Tensor::scratch({8}, DType::f32, Device::cpu);
  EXPECT_EQ(memory_stats().allocations, start.allocations + 1);
  EXPECT_NO_THROW(t.data<float>());
}

TEST(ArenaScope, ScratchTensorsAllocateNothingOnceWarm) {
  auto step = [] {
    ArenaScope scope;
    EXPECT_TRUE(ArenaScope::active());
    double total = 0;
    for (int i = 1; i <= 20; ++i) {
      Tensor t = Tensor::scratch({i, 100}, DType::f64, Device::cpu);
      EXPECT_TRUE(aligned64(t.raw()));
      backend(Device::cpu).fill(t, 1.0);
      total += t.at(t.numel() - 1);
    }
    Tensor big = Tensor::scratch({1 << 20}, DType::f32, Device::cpu);  // beyond one 4 MiB block
    backend(Device::cpu).fill(big, 2.0);
    return total + big.at(0);
  };
  EXPECT_EQ(step(), 22.0);  // warm-up: the thread's arena grows here
  const MemoryStats warm = memory_stats();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(step(), 22.0);
  EXPECT_EQ(memory_stats().allocations, warm.allocations);
  EXPECT_EQ(memory_stats().live_bytes, warm.live_bytes);
  EXPECT_FALSE(ArenaScope::active());
}

TEST(ArenaScope, StaleScratchThrowsStateError) {
  Tensor stale;
  {
    ArenaScope scope;
    stale = Tensor::scratch({2, 3}, DType::f32, Device::cpu);
    EXPECT_NO_THROW(stale.data<float>());
  }
  EXPECT_THROW(stale.data<float>(), StateError);
  EXPECT_THROW(stale.raw(), StateError);
  EXPECT_THROW(stale.to_vector(), StateError);
  EXPECT_THROW(stale.clone(), StateError);
  try {
    stale.at(0);
    ADD_FAILURE() << "expected StateError";
  } catch (const StateError& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos) << e.what();
  }
  // A new scope at the same depth must not revive it, though it reuses the same memory.
  ArenaScope again;
  Tensor fresh = Tensor::scratch({2, 3}, DType::f32, Device::cpu);
  EXPECT_NO_THROW(fresh.data<float>());
  EXPECT_THROW(stale.data<float>(), StateError);
}

TEST(ArenaScope, RewindInvalidatesOnlyThatScopesTemporaries) {
  ArenaScope outer;
  Tensor kept = Tensor::scratch({4}, DType::f64, Device::cpu);
  Tensor owned = Tensor::zeros({4});
  Tensor inner_tmp;
  {
    ArenaScope inner;
    inner_tmp = Tensor::scratch({4}, DType::f64, Device::cpu);
    Tensor view = kept.rows(1, 3);  // a view carries its parent's stamp
    EXPECT_NO_THROW(view.raw());
  }
  EXPECT_THROW(inner_tmp.raw(), StateError);
  EXPECT_NO_THROW(kept.raw());
  outer.rewind();
  EXPECT_THROW(kept.raw(), StateError);
  EXPECT_THROW(kept.rows(0, 1).raw(), StateError);
  EXPECT_NO_THROW(owned.raw());  // owned storage is never stale
  Tensor after = Tensor::scratch({4}, DType::f64, Device::cpu);
  EXPECT_NO_THROW(after.raw());
}

TEST(ArenaScope, ArenasArePerThread) {
  ArenaScope scope;
  void* here = Tensor::scratch({16}, DType::f32, Device::cpu).raw();
  void* there = nullptr;
  bool active_there = true;
  std::thread t([&] {
    active_there = ArenaScope::active();
    ArenaScope s;
    there = Tensor::scratch({16}, DType::f32, Device::cpu).raw();
  });
  t.join();
  EXPECT_FALSE(active_there);
  EXPECT_NE(here, there);
  EXPECT_EQ(&thread_arena(Device::cpu), &thread_arena(Device::cpu));
}

}  // namespace
}  // namespace asbi::core
