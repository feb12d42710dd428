// CUDA kernels of the backend, timed on the device: set mean-pooling and the rational-quadratic
// spline against memory bandwidth, cuBLAS GEMM (through Backend::gemm) against arithmetic peak.
// On a machine without a CUDA device it says so and exits 0.
//
//   BM_mean_pool/B/S/H                dense sets x [B, S, H] → y [B, H]
//   BM_mean_pool_backward/B/S/H       dx [B, S, H] += dy [B, H] / S
//   BM_mean_pool_ragged/B/S/H         B packed sets of lengths uniform on [1, 2S - 1] (fixed seed)
//   BM_mean_pool_ragged_backward/B/S/H
//   BM_rq_spline/n/inverse            n elements, K = 10 bins, forward (0) or inverse (1)
//   BM_gemm_mlp/batch/width/product   a linear layer's products: 0 = X Wᵀ, 1 = dY W, 2 = dYᵀ X
//   BM_host_copy/MiB/upload/path      one host↔device copy of pageable memory, wall time:
//                                     path 0 = cudaMemcpy, 1 = the pinned staging ring (what the
//                                     backend does), 2 = from/to pinned memory (the DMA's ceiling)
//   BM_upload_behind_work/path        host time to queue 64 × (2 KiB upload + kernel) behind a
//                                     ~1 ms GEMM: path 0 = cudaMemcpy, 1 = the staging ring
//
// Every benchmark is float32. Each iteration is one backend call bracketed by CUDA events on the
// default stream (manual time), so the time is the device's, launch latency aside; ragged pooling
// includes the upload of its B + 1 set offsets, which every call makes. Counters:
//   GB/s     bytes the kernel must move at least (each input read once, each output written once)
//            per second; compare with the device's DRAM bandwidth (H100 SXM: 3350 GB/s)
//   GFLOP/s  2 · m · n · k per second (GEMM only); compare with the float32 peak (H100 SXM: 67
//            TFLOP/s without TF32, which the backend does not use)
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/backend.hpp"
#include "core/tensor.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/host_staging.hpp"

namespace {

using namespace asbi;
using core::Device;
using core::DType;
using core::Shape;
using core::Tensor;

// A float32 tensor on the GPU, uniform on [lo, hi), the same for a given seed.
Tensor random_gpu(const Shape& shape, float lo, float hi, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t = Tensor::empty(shape, DType::f32);
  float* p = t.data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = dist(gen);
  return t.to(Device::cuda);
}

void check(cudaError_t status) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "asbi_bench_cuda_kernels: %s\n", cudaGetErrorString(status));
    std::exit(1);
  }
}

// Times one backend call per iteration with CUDA events; returns the total device seconds.
template <typename F>
double time_on_device(benchmark::State& state, F&& call) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start));
  check(cudaEventCreate(&stop));
  call();  // warm-up: pool blocks, cuBLAS heuristics, instruction caches
  check(cudaDeviceSynchronize());
  double total = 0;
  for (auto _ : state) {
    check(cudaEventRecord(start, 0));
    call();
    check(cudaEventRecord(stop, 0));
    check(cudaEventSynchronize(stop));
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms * 1e-3);
    total += ms * 1e-3;
  }
  check(cudaEventDestroy(start));
  check(cudaEventDestroy(stop));
  return total;
}

void report_bandwidth(benchmark::State& state, double bytes_per_call, double seconds) {
  state.counters["GB/s"] =
      bytes_per_call * static_cast<double>(state.iterations()) / seconds * 1e-9;
}

// --- set mean-pooling -----------------------------------------------------------------------

// Lengths uniform on [1, 2S - 1]: mean S, from length 1 up.
std::vector<std::int64_t> ragged_lengths(std::int64_t sets, std::int64_t mean_length) {
  std::mt19937_64 gen(7);
  std::uniform_int_distribution<std::int64_t> dist(1, 2 * mean_length - 1);
  std::vector<std::int64_t> lengths(static_cast<std::size_t>(sets));
  for (std::int64_t& n : lengths) n = dist(gen);
  return lengths;
}

void mean_pool(benchmark::State& state, bool ragged, bool backward) {
  const std::int64_t sets = state.range(0), mean_length = state.range(1), width = state.range(2);
  const std::vector<std::int64_t> lengths =
      ragged ? ragged_lengths(sets, mean_length) : std::vector<std::int64_t>{};
  std::int64_t rows = sets * mean_length;
  if (ragged) {
    rows = 0;
    for (std::int64_t n : lengths) rows += n;
  }
  const Shape elements = ragged ? Shape{rows, width} : Shape{sets, mean_length, width};
  Tensor x = random_gpu(elements, -1, 1, 1);  // x forward, dx backward
  Tensor y = random_gpu({sets, width}, -1, 1, 2);
  core::Backend& gpu = cuda::backend();
  const double seconds = time_on_device(state, [&] {
    if (backward)
      gpu.mean_pool_backward(y, lengths, x);
    else
      gpu.mean_pool(x, lengths, y);
  });
  // Forward: read x, write y. Backward: read y, read and write dx. Plus the offsets when ragged.
  const double element_bytes = static_cast<double>(rows * width) * sizeof(float);
  const double pooled_bytes = static_cast<double>(sets * width) * sizeof(float);
  const double offset_bytes = ragged ? static_cast<double>(sets + 1) * sizeof(std::int64_t) : 0;
  report_bandwidth(state, (backward ? 2 : 1) * element_bytes + pooled_bytes + offset_bytes,
                   seconds);
}

void pool_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "S", "H"});
  b->Args({4096, 100, 64})->Args({4096, 100, 256})->Args({65536, 16, 128});
  b->Args({256, 4096, 128})->Args({1024, 1000, 33});
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

void BM_mean_pool(benchmark::State& state) { mean_pool(state, false, false); }
void BM_mean_pool_backward(benchmark::State& state) { mean_pool(state, false, true); }
void BM_mean_pool_ragged(benchmark::State& state) { mean_pool(state, true, false); }
void BM_mean_pool_ragged_backward(benchmark::State& state) { mean_pool(state, true, true); }
BENCHMARK(BM_mean_pool)->Apply(pool_shapes);
BENCHMARK(BM_mean_pool_backward)->Apply(pool_shapes);
BENCHMARK(BM_mean_pool_ragged)->Apply(pool_shapes);
BENCHMARK(BM_mean_pool_ragged_backward)->Apply(pool_shapes);

// --- rational-quadratic spline --------------------------------------------------------------

// n elements with K = 10 bins; x uniform on [-3.3, 3.3] with B = 3, so about 10% fall in the
// identity tails, as in bench_spline.cpp.
void BM_rq_spline(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const bool inverse = state.range(1) != 0;
  const core::RqSplineParams p{.bins = 10, .tail_bound = 3.0};
  const std::int64_t k = p.bins;
  Tensor x = random_gpu({n}, -3.3f, 3.3f, 3);
  Tensor widths = random_gpu({n, k}, -1, 1, 4);
  Tensor heights = random_gpu({n, k}, -1, 1, 5);
  Tensor derivatives = random_gpu({n, k - 1}, -1, 1, 6);
  Tensor y = Tensor::empty({n}, DType::f32, Device::cuda);
  Tensor log_det = Tensor::empty({n}, DType::f32, Device::cuda);
  core::Backend& gpu = cuda::backend();
  const double seconds = time_on_device(
      state, [&] { gpu.rq_spline(x, widths, heights, derivatives, p, inverse, y, log_det); });
  // Reads x and 3K - 1 parameters per element, writes y and log_det.
  report_bandwidth(state, static_cast<double>(n * (3 * k + 2)) * sizeof(float), seconds);
}
BENCHMARK(BM_rq_spline)
    ->ArgNames({"n", "inverse"})
    ->ArgsProduct({{1 << 20, 1 << 22}, {0, 1}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// --- GEMM -----------------------------------------------------------------------------------

// The three products of a linear layer X [batch, width] → Y [batch, width], through the backend's
// gemm (cuBLAS, full float32): forward X Wᵀ, input gradient dY W, weight gradient dYᵀ X.
void BM_gemm_mlp(benchmark::State& state) {
  const std::int64_t batch = state.range(0), width = state.range(1);
  const int product = static_cast<int>(state.range(2));
  Tensor activations = random_gpu({batch, width}, -1, 1, 8);  // X or dY
  Tensor weight = random_gpu({width, width}, -1, 1, 9);
  Tensor out = Tensor::empty(product == 2 ? Shape{width, width} : Shape{batch, width}, DType::f32,
                             Device::cuda);
  core::Backend& gpu = cuda::backend();
  const double seconds = time_on_device(state, [&] {
    if (product == 0) gpu.gemm(false, true, 1.0, activations, weight, 0.0, out);
    if (product == 1) gpu.gemm(false, false, 1.0, activations, weight, 0.0, out);
    // dYᵀ X with one buffer as both operands: the same shapes and flops.
    if (product == 2) gpu.gemm(true, false, 1.0, activations, activations, 0.0, out);
  });
  const double flops = 2.0 * static_cast<double>(batch) * static_cast<double>(width * width);
  state.counters["GFLOP/s"] = flops * static_cast<double>(state.iterations()) / seconds * 1e-9;
}
BENCHMARK(BM_gemm_mlp)
    ->ArgNames({"batch", "width", "product"})
    ->ArgsProduct({{4096, 16384, 65536}, {64, 128, 256, 512}, {0, 1, 2}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// --- host ↔ device copies ------------------------------------------------------------------

void BM_host_copy(benchmark::State& state) {
  const std::size_t bytes = static_cast<std::size_t>(state.range(0)) << 20;
  const bool upload = state.range(1) != 0;
  const int path = static_cast<int>(state.range(2));
  std::vector<unsigned char> pageable(bytes, 1);
  unsigned char* pinned = nullptr;
  if (path == 2) check(cudaMallocHost(reinterpret_cast<void**>(&pinned), bytes));
  unsigned char* host = path == 2 ? pinned : pageable.data();
  void* device = nullptr;
  check(cudaMalloc(&device, bytes));
  auto copy = [&] {
    if (path == 1) {
      if (upload)
        cuda::host_staging().upload(device, host, bytes);
      else
        cuda::host_staging().download(host, device, bytes);
    } else {
      check(cudaMemcpy(upload ? device : static_cast<void*>(host), upload ? host : device, bytes,
                       upload ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost));
    }
    check(cudaDeviceSynchronize());  // an upload returns before its DMA ends: count the DMA
  };
  copy();
  for (auto _ : state) copy();
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  check(cudaFree(device));
  if (pinned) check(cudaFreeHost(pinned));
}
BENCHMARK(BM_host_copy)
    ->ArgNames({"MiB", "upload", "path"})
    ->ArgsProduct({{1, 64, 512}, {1, 0}, {0, 1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// A training step uploads its minibatch's row index. From pageable memory cudaMemcpy first
// synchronises the stream, so the host waits for the GEMM before it can queue anything more.
void BM_upload_behind_work(benchmark::State& state) {
  const bool staged = state.range(0) != 0;
  constexpr int uploads = 64;
  constexpr std::size_t upload_bytes = 2048;
  Tensor a = random_gpu({4096, 4096}, -1, 1, 10);  // ~1 ms of float32 GEMM on an H100
  Tensor c = Tensor::empty({4096, 4096}, DType::f32, Device::cuda);
  Tensor staged_rows = Tensor::empty({static_cast<std::int64_t>(upload_bytes / sizeof(float))},
                                     DType::f32, Device::cuda);
  Tensor sum = Tensor::zeros(staged_rows.shape(), DType::f32, Device::cuda);
  std::vector<float> host(upload_bytes / sizeof(float), 1.0f);
  core::Backend& gpu = cuda::backend();
  double queue_seconds = 0;
  for (auto _ : state) {
    gpu.gemm(false, false, 1.0, a, a, 0.0, c);
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < uploads; ++i) {
      if (staged)
        cuda::host_staging().upload(staged_rows.raw(), host.data(), upload_bytes);
      else
        check(cudaMemcpy(staged_rows.raw(), host.data(), upload_bytes, cudaMemcpyHostToDevice));
      gpu.axpy(1.0, staged_rows, sum);
    }
    queue_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    check(cudaDeviceSynchronize());
  }
  state.counters["queue_us_per_upload"] =
      queue_seconds * 1e6 / (static_cast<double>(state.iterations()) * uploads);
}
BENCHMARK(BM_upload_behind_work)->ArgName("staged")->Arg(0)->Arg(1)->UseRealTime()->Unit(
    benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  if (cuda::device_count() == 0) {
    std::printf("asbi_bench_cuda_kernels: skipped, no CUDA device (%s)\n",
                cuda::unavailable_reason().c_str());
    return 0;
  }
  core::register_backend(Device::cuda, &cuda::backend());
  benchmark::AddCustomContext("cuda_device", cuda::backend().description());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
