#pragma once
// What the benchmarks share: the machine's peak, random fills, a wall clock, and two allocation
// counters (asbi's own tensor-storage counter and a count of every global operator new).
//
// Every figure is printed beside the machine's peak (llm.c's mfu.h). The default peak is 150
// GFLOP/s float32 per core (measured on the reference machine: AVX-512, 2 FMA units × 16 lanes ×
// 2 flops per cycle) times the OpenMP threads in use; ASBI_PEAK_GFLOPS=<total> overrides it.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <random>

#include "core/memory.hpp"
#include "core/tensor.hpp"

namespace asbi::bench {

constexpr double peak_gflops_per_core = 150.0;

// The float32 peak in GFLOP/s of the cores OpenMP uses (or $ASBI_PEAK_GFLOPS).
inline double peak_gflops() {
  if (const char* v = std::getenv("ASBI_PEAK_GFLOPS")) {
    const double p = std::atof(v);
    if (p > 0) return p;
  }
  return peak_gflops_per_core * omp_get_max_threads();
}

// Uniform values in [lo, hi) into a CPU float32 tensor; deterministic for a given seed.
inline void fill_uniform(core::Tensor& t, float lo, float hi, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  float* p = t.data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = dist(gen);
}

inline core::Tensor random_tensor(const core::Shape& shape, float lo, float hi, unsigned seed) {
  core::Tensor t = core::Tensor::empty(shape);
  fill_uniform(t, lo, hi, seed);
  return t;
}

// Wall-clock seconds since construction. The benchmarks time their loop with it as well, so that
// derived figures (GFLOP/s, ns per op, ratios) come out as plain numbers instead of "/s" rates.
class WallClock {
 public:
  WallClock() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Global operator new calls so far in this process (bench_common.cpp replaces operator new).
std::int64_t heap_allocations();

// Allocations per call of `step`, over `calls` calls made outside the timed loop (after the
// caller's warm-up): asbi's tensor storage (core::memory_stats) as counter "allocs", and every C++
// heap allocation (operator new) as "heap_allocs". Counted apart from the timing so that Google
// Benchmark's own bookkeeping does not show up in them.
template <typename F>
void report_allocations(benchmark::State& state, F&& step, int calls = 10) {
  const std::int64_t storage = core::memory_stats().allocations, heap = heap_allocations();
  for (int i = 0; i < calls; ++i) step();
  // Both read before the counters map (which allocates) is written.
  const double storage_per_call =
      static_cast<double>(core::memory_stats().allocations - storage) / calls;
  const double heap_per_call = static_cast<double>(heap_allocations() - heap) / calls;
  state.counters["allocs"] = storage_per_call;
  state.counters["heap_allocs"] = heap_per_call;
}

inline void report_threads(benchmark::State& state) {
  state.counters["threads"] = omp_get_max_threads();
}

// Mean seconds per call of f over at least `min_seconds`, after one warm-up call: the baselines
// that benchmarks report their counters against.
template <typename F>
double seconds_per_call(F&& f, double min_seconds = 0.1) {
  f();
  std::int64_t calls = 0;
  WallClock clock;
  while (clock.seconds() < min_seconds) {
    for (int i = 0; i < 10; ++i) f();
    calls += 10;
  }
  return clock.seconds() / static_cast<double>(calls);
}

}  // namespace asbi::bench
