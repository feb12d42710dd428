#include "core/memory.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>

#include "core/backend.hpp"
#include "core/error.hpp"

namespace asbi::core {
namespace {

struct Counters {
  std::atomic<std::int64_t> live{0}, peak{0}, allocations{0}, allocated{0};
};
Counters counters[2];

Counters& counters_for(Device d) { return counters[static_cast<int>(d)]; }

void count_allocation(Device d, std::int64_t bytes) {
  Counters& c = counters_for(d);
  std::int64_t live = c.live.fetch_add(bytes) + bytes;
  std::int64_t peak = c.peak.load();
  while (live > peak && !c.peak.compare_exchange_weak(peak, live)) {
  }
  c.allocations.fetch_add(1);
  c.allocated.fetch_add(bytes);
}

}  // namespace

MemoryStats memory_stats(Device device) {
  Counters& c = counters_for(device);
  return {c.live.load(), c.peak.load(), c.allocations.load(), c.allocated.load()};
}

void reset_peak_memory(Device device) {
  Counters& c = counters_for(device);
  c.peak.store(c.live.load());
}

void* allocate(std::size_t bytes, Device device) {
  if (bytes == 0) bytes = 1;  // a distinct non-null pointer for empty tensors
  void* ptr = backend(device).allocate(bytes);
  count_allocation(device, static_cast<std::int64_t>(bytes));
  return ptr;
}

void deallocate(void* ptr, std::size_t bytes, Device device) {
  if (!ptr) return;
  if (bytes == 0) bytes = 1;
  backend(device).deallocate(ptr, bytes);
  counters_for(device).live.fetch_sub(static_cast<std::int64_t>(bytes));
}

// ---------------------------------------------------------------------------------------------
// Arena

Arena::Arena(Device device, std::size_t block_bytes) : device_(device), block_bytes_(block_bytes) {}

Arena::~Arena() {
  for (Block& b : blocks_) deallocate(b.data, b.bytes, device_);
}

void* Arena::allocate(std::size_t bytes) {
  bytes = (bytes + alignment - 1) / alignment * alignment;
  if (bytes == 0) bytes = alignment;
  // Fill the current block; when it is full move on to the next block that is large enough,
  // appending a new one only when none of the kept blocks fits.
  while (current_ < blocks_.size() && offset_ + bytes > blocks_[current_].bytes) {
    ++current_;
    offset_ = 0;
  }
  if (current_ == blocks_.size()) {
    std::size_t size = std::max(block_bytes_, bytes);
    if (!blocks_.empty()) size = std::max(size, blocks_.back().bytes * 2);
    blocks_.push_back({static_cast<char*>(core::allocate(size, device_)), size});
  }
  char* ptr = blocks_[current_].data + offset_;
  offset_ += bytes;
  high_water_ = std::max(high_water_, used_bytes());
  return ptr;
}

void Arena::rewind(Mark m) {
  current_ = m.block;
  offset_ = m.offset;
}

std::size_t Arena::used_bytes() const {
  std::size_t used = offset_;
  for (std::size_t i = 0; i < current_ && i < blocks_.size(); ++i) used += blocks_[i].bytes;
  return used;
}

std::size_t Arena::capacity_bytes() const {
  std::size_t total = 0;
  for (const Block& b : blocks_) total += b.bytes;
  return total;
}

namespace {
thread_local std::unique_ptr<Arena> arenas[2];
constexpr int max_scope_depth = 64;
thread_local std::uint32_t scope_depth = 0;
thread_local std::uint32_t scope_generation[max_scope_depth + 1] = {};
}  // namespace

Arena& thread_arena(Device device) {
  auto& slot = arenas[static_cast<int>(device)];
  if (!slot) slot = std::make_unique<Arena>(device);
  return *slot;
}

ArenaScope::ArenaScope()
    : cpu_mark_(thread_arena(Device::cpu).mark()),
      had_cuda_(arenas[static_cast<int>(Device::cuda)] != nullptr) {
  if (had_cuda_) cuda_mark_ = arenas[static_cast<int>(Device::cuda)]->mark();
  if (scope_depth == max_scope_depth)
    throw StateError(str("ArenaScope: more than ", max_scope_depth, " nested scopes"));
  depth_ = ++scope_depth;
}

ArenaScope::~ArenaScope() {
  rewind();
  --scope_depth;
}

void ArenaScope::rewind() {
  thread_arena(Device::cpu).rewind(cpu_mark_);
  // A CUDA arena created inside this scope started empty, so rewinding it to zero is exact.
  if (auto& cuda = arenas[static_cast<int>(Device::cuda)])
    cuda->rewind(had_cuda_ ? cuda_mark_ : Arena::Mark{});
  ++scope_generation[depth_];
}

bool ArenaScope::active() { return scope_depth > 0; }
std::uint32_t ArenaScope::current_depth() { return scope_depth; }

ArenaScope::Stamp ArenaScope::stamp() { return {scope_depth, scope_generation[scope_depth]}; }

bool ArenaScope::alive(Stamp s) {
  return s.depth == 0 || (s.depth <= scope_depth && scope_generation[s.depth] == s.generation);
}

}  // namespace asbi::core
