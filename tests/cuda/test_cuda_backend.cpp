// The CUDA backend against the CPU backend, kernel by kernel: the same inputs go through both and
// the results must agree to within rounding. The CPU backend is the reference for semantics
// (accumulating backward kernels, broadcasting, [outer, n, inner] axis views), so a mismatch here
// is a CUDA bug. Every test skips on a machine without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda_test_util.hpp"
#include "cuda/device_pool.hpp"
#include "cuda/host_staging.hpp"

namespace asbi::cuda {
namespace {

using core::Binary;
using core::Device;
using core::DType;
using core::Shape;
using core::Tensor;
using core::Unary;
using core::UnaryParams;

class CudaBackendTest : public test_util::CudaTest {};

constexpr DType dtypes[] = {DType::f32, DType::f64};

std::vector<double> random_values(std::int64_t n, double lo, double hi, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<std::size_t>(n));
  for (double& x : v) x = dist(rng);
  return v;
}

Tensor random_cpu(const Shape& shape, DType dtype, std::uint64_t seed, double lo = -1,
                  double hi = 1) {
  return Tensor::from(random_values(shape.numel(), lo, hi, seed), shape, dtype);
}

using test_util::expect_close;
using test_util::on_gpu;
using test_util::Tolerance;
using test_util::tolerance;

std::string label(const char* op, DType dtype) { return core::str(op, " ", dtype); }

// --- device and memory ----------------------------------------------------------------------

TEST_F(CudaBackendTest, DescribesTheDevice) {
  EXPECT_TRUE(gpu().available());
  EXPECT_EQ(gpu().device(), Device::cuda);
  EXPECT_TRUE(core::device_available(Device::cuda));
  const std::string d = gpu().description();
  EXPECT_FALSE(d.empty());
  EXPECT_EQ(d.find("no device"), std::string::npos) << d;
}

TEST_F(CudaBackendTest, PoolSizeClasses) {
  EXPECT_EQ(DevicePool::size_class(1), 512u);
  EXPECT_EQ(DevicePool::size_class(512), 512u);
  EXPECT_EQ(DevicePool::size_class(513), 1024u);
  EXPECT_EQ(DevicePool::size_class(std::size_t{1} << 20), std::size_t{1} << 20);
  EXPECT_EQ(DevicePool::size_class((std::size_t{1} << 20) + 1),
            (std::size_t{1} << 20) + (std::size_t{1} << 17));
  EXPECT_EQ(DevicePool::size_class(std::size_t{3} << 20), std::size_t{3} << 20);
}

TEST_F(CudaBackendTest, PoolReusesFreedBlocks) {
  DevicePool pool;
  void* p = pool.allocate(1000);
  PoolStats s = pool.stats();
  EXPECT_EQ(s.driver_allocations, 1);
  EXPECT_EQ(s.reserved_bytes, 1024u);
  EXPECT_EQ(s.in_use_bytes, 1024u);
  EXPECT_EQ(s.cached_bytes, 0u);

  pool.deallocate(p, 1000);
  s = pool.stats();
  EXPECT_EQ(s.in_use_bytes, 0u);
  EXPECT_EQ(s.cached_bytes, 1024u);
  EXPECT_EQ(s.reserved_bytes, 1024u);

  void* q = pool.allocate(700);  // the same size class: served from the cache
  EXPECT_EQ(q, p);
  s = pool.stats();
  EXPECT_EQ(s.driver_allocations, 1);
  EXPECT_EQ(s.cache_hits, 1);
  EXPECT_EQ(s.in_use_bytes, 1024u);

  void* r = pool.allocate(5000);  // another class: a new block
  EXPECT_NE(r, q);
  EXPECT_EQ(pool.stats().driver_allocations, 2);
  EXPECT_EQ(pool.stats().peak_reserved_bytes, 1024u + 5120u);

  pool.deallocate(q, 700);
  pool.deallocate(r, 5000);
  EXPECT_THROW(pool.deallocate(r, 5000), core::DeviceError);  // freed twice
  pool.release_cached();
  s = pool.stats();
  EXPECT_EQ(s.reserved_bytes, 0u);
  EXPECT_EQ(s.cached_bytes, 0u);
  EXPECT_EQ(s.in_use_bytes, 0u);
}

TEST_F(CudaBackendTest, TensorsDrawOnThePool) {
  void* first = nullptr;
  {
    Tensor t = Tensor::empty({123}, DType::f32, Device::cuda);
    first = t.raw();
  }
  const std::int64_t hits = device_pool().stats().cache_hits;
  Tensor u = Tensor::empty({123}, DType::f32, Device::cuda);
  EXPECT_EQ(u.raw(), first);
  EXPECT_EQ(device_pool().stats().cache_hits, hits + 1);
}

TEST_F(CudaBackendTest, HostDeviceRoundTrip) {
  for (DType dtype : dtypes) {
    const Tensor host = random_cpu({17, 31}, dtype, 1);
    const Tensor dev = on_gpu(host);
    EXPECT_EQ(dev.device(), Device::cuda);
    const Tensor copy = dev.clone();  // device to device
    EXPECT_EQ(copy.to_vector(), host.to_vector()) << dtype;
    EXPECT_EQ(dev.at(100), host.at(100)) << dtype;
  }
}

// --- pinned staging --------------------------------------------------------------------------

// The ring's arithmetic needs no device, so these run everywhere.
TEST(StagingRing, SmallCopiesShareASlotAlignedAndLargeOnesOpenTheNext) {
  StagingRing ring(4096, 3);
  const StagingRing::Place a = ring.take(10);
  EXPECT_EQ(a.slot, 0);
  EXPECT_EQ(a.offset, 0u);
  EXPECT_TRUE(a.entered);
  const StagingRing::Place b = ring.take(300);
  EXPECT_EQ(b.slot, 0);
  EXPECT_EQ(b.offset, StagingRing::alignment);
  EXPECT_FALSE(b.entered);
  // b ends at 556 bytes, so c starts at the next multiple of 256 and exactly fills the slot.
  const StagingRing::Place c = ring.take(4096 - 3 * StagingRing::alignment);
  EXPECT_EQ(c.slot, 0);
  EXPECT_EQ(c.offset, 3 * StagingRing::alignment);
  EXPECT_FALSE(c.entered);
  const StagingRing::Place d = ring.take(1);  // slot 0 is full
  EXPECT_EQ(d.slot, 1);
  EXPECT_EQ(d.offset, 0u);
  EXPECT_TRUE(d.entered);
  const StagingRing::Place e = ring.take(4096);  // a whole slot
  EXPECT_EQ(e.slot, 2);
  EXPECT_TRUE(e.entered);
  const StagingRing::Place f = ring.take(1);  // wraps around
  EXPECT_EQ(f.slot, 0);
  EXPECT_EQ(f.offset, 0u);
  EXPECT_TRUE(f.entered);
}

TEST(StagingRing, NoCopyStraddlesTheEndOfASlot) {
  StagingRing ring(1024, 2);
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::size_t> size(1, 1024);
  int previous = -1;
  for (int i = 0; i < 2000; ++i) {
    const std::size_t n = size(rng);
    const StagingRing::Place p = ring.take(n);
    EXPECT_LE(p.offset + n, 1024u);
    EXPECT_EQ(p.offset % StagingRing::alignment, 0u);
    EXPECT_EQ(p.entered, p.slot != previous) << i;
    previous = p.slot;
  }
}

TEST(StagingRing, RejectsCopiesAndRingsItCannotHold) {
  StagingRing ring(1024, 2);
  EXPECT_THROW(ring.take(0), core::ValueError);
  EXPECT_THROW(ring.take(1025), core::ValueError);
  EXPECT_THROW(StagingRing(1024, 1), core::ValueError);
  EXPECT_THROW(StagingRing(1000, 4), core::ValueError);
}

std::vector<unsigned char> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<unsigned char> v(n);
  for (auto& b : v) b = static_cast<unsigned char>(rng());
  return v;
}

// Sizes on both sides of the slot size, so single copies, shared slots and chunked copies that
// wrap the ring all occur; every byte must come back.
TEST_F(CudaBackendTest, StagedCopiesRoundTripEveryByte) {
  HostStaging staging(std::size_t{1} << 16, 3);
  const std::size_t sizes[] = {1, 255, 257, (1u << 16) - 1, 1u << 16, (1u << 16) + 1,
                               (5u << 16) + 3, (23u << 20) + 11};
  for (std::size_t n : sizes) {
    const std::vector<unsigned char> host = random_bytes(n, n);
    void* dev = device_pool().allocate(n);
    staging.upload(dev, host.data(), n);
    std::vector<unsigned char> back(n, 0);
    staging.download(back.data(), dev, n);
    device_pool().deallocate(dev, n);
    EXPECT_EQ(back, host) << n << " bytes";
  }
  const StagingStats s = staging.stats();
  EXPECT_EQ(s.unpinned_reason, "");
  EXPECT_EQ(s.pinned_bytes, 3u << 16);
  EXPECT_EQ(s.uploads, std::ssize(sizes));
  EXPECT_EQ(s.downloads, std::ssize(sizes));
}

// Thousands of small uploads queued behind kernels that read them: a slot reused before its DMA
// finished would change the sum. The ring is a few slots, so it wraps many times.
TEST_F(CudaBackendTest, UploadsQueuedAheadOfTheGpuAreNotOverwritten) {
  const std::int64_t n = 4096, rounds = 3000;
  Tensor sum = Tensor::zeros({n}, DType::f64, Device::cuda);
  const Tensor big = Tensor::zeros({512, 512}, DType::f64, Device::cuda);
  Tensor big_out = Tensor::zeros({512, 512}, DType::f64, Device::cuda);
  std::vector<double> values(static_cast<std::size_t>(n));
  double want = 0;
  for (std::int64_t r = 0; r < rounds; ++r) {
    if (r % 100 == 0) gpu().gemm(false, false, 1.0, big, big, 0.0, big_out);  // keep the GPU busy
    std::fill(values.begin(), values.end(), static_cast<double>(r));
    const Tensor up = Tensor::from(values, {n}, DType::f64).to(Device::cuda);
    std::fill(values.begin(), values.end(), -1.0);  // the host reuses its buffer at once
    gpu().axpy(1.0, up, sum);
    want += static_cast<double>(r);
  }
  for (double v : sum.to_vector()) ASSERT_EQ(v, want);
  EXPECT_GT(host_staging().stats().uploads, rounds - 1);
}

// --- matrix products ------------------------------------------------------------------------

TEST_F(CudaBackendTest, GemmMatchesCpuForEveryTranspose) {
  const std::int64_t m = 37, k = 53, n = 19;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct Scale {
    double alpha, beta;
  };
  for (DType dtype : dtypes)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (Scale s : {Scale{1, 0}, Scale{0.7, 1}, Scale{-1.3, -0.5}}) {
          const Tensor a = random_cpu(ta ? Shape{k, m} : Shape{m, k}, dtype, 2);
          const Tensor b = random_cpu(tb ? Shape{n, k} : Shape{k, n}, dtype, 3);
          // beta = 0 must not read C: start it as NaN there, as a fresh buffer might hold.
          Tensor c_cpu =
              s.beta == 0 ? Tensor::full({m, n}, nan, dtype) : random_cpu({m, n}, dtype, 4);
          Tensor c_gpu = on_gpu(c_cpu);
          cpu().gemm(ta, tb, s.alpha, a, b, s.beta, c_cpu);
          gpu().gemm(ta, tb, s.alpha, on_gpu(a), on_gpu(b), s.beta, c_gpu);
          const Tolerance tol =
              dtype == DType::f32 ? Tolerance{1e-4, 1e-4} : Tolerance{1e-11, 1e-11};
          expect_close(c_gpu, c_cpu, tol,
                       core::str("gemm ", dtype, " ta=", ta, " tb=", tb, " alpha=", s.alpha,
                                 " beta=", s.beta));
        }
}

TEST_F(CudaBackendTest, GemmRejectsMismatchedShapes) {
  Tensor a = Tensor::zeros({3, 4}, DType::f32, Device::cuda);
  Tensor b = Tensor::zeros({5, 2}, DType::f32, Device::cuda);
  Tensor c = Tensor::zeros({3, 2}, DType::f32, Device::cuda);
  EXPECT_THROW(gpu().gemm(false, false, 1, a, b, 0, c), core::ShapeError);
}

// --- elementwise ----------------------------------------------------------------------------

struct UnaryCase {
  Unary op;
  UnaryParams p;
  double lo, hi;  // inputs drawn from the op's domain
};

std::vector<UnaryCase> unary_cases() {
  std::vector<UnaryCase> cases;
  for (int i = 0; i <= static_cast<int>(Unary::identity); ++i) {
    UnaryCase c{static_cast<Unary>(i), {}, -3, 3};
    // clang-format off
    switch (c.op) {
      case Unary::leaky_relu: c.p.a = 0.1; break;
      case Unary::elu: c.p.a = 1.3; break;
      case Unary::pow: c.p.a = 2.5; c.lo = 0.1; break;
      case Unary::clamp: c.p = {-0.5, 0.7}; break;
      case Unary::log: case Unary::sqrt: c.lo = 0.1; break;
      case Unary::log1p: c.lo = -0.5; break;
      default: break;
    }
    // clang-format on
    cases.push_back(c);
  }
  return cases;
}

TEST_F(CudaBackendTest, UnaryForwardAndBackwardMatchCpuForEveryOp) {
  const Shape shape{7, 143};
  for (DType dtype : dtypes)
    for (const UnaryCase& c : unary_cases()) {
      const std::string what = label(core::name(c.op), dtype);
      const Tensor x = random_cpu(shape, dtype, 5, c.lo, c.hi);
      const Tensor dy = random_cpu(shape, dtype, 6);
      Tensor y_cpu = Tensor::empty(shape, dtype);
      Tensor y_gpu = Tensor::empty(shape, dtype, Device::cuda);
      cpu().unary(c.op, c.p, x, y_cpu);
      gpu().unary(c.op, c.p, on_gpu(x), y_gpu);
      expect_close(y_gpu, y_cpu, tolerance(dtype), what + " forward");

      // dx starts non-zero: backward kernels accumulate.
      Tensor dx_cpu = random_cpu(shape, dtype, 7);
      Tensor dx_gpu = on_gpu(dx_cpu);
      cpu().unary_backward(c.op, c.p, x, y_cpu, dy, dx_cpu);
      gpu().unary_backward(c.op, c.p, on_gpu(x), y_gpu, on_gpu(dy), dx_gpu);
      expect_close(dx_gpu, dx_cpu, tolerance(dtype), what + " backward");
    }
}

// Runs a binary op forward and backward on both devices and compares y, da and db.
void check_binary(core::Backend& cpu, core::Backend& gpu, Binary op, DType dtype, const Shape& sa,
                  const Shape& sb, bool with_da) {
  const std::string what = core::str(core::name(op), " ", dtype, " ", sa, " with ", sb);
  const Shape sy = core::broadcast_shapes(sa, sb);
  const Tensor a = random_cpu(sa, dtype, 8, -2, 2);
  const Tensor b = random_cpu(sb, dtype, 9, 0.5, 2);  // away from 0 for div
  const Tensor dy = random_cpu(sy, dtype, 10);
  Tensor y_cpu = Tensor::empty(sy, dtype);
  Tensor y_gpu = Tensor::empty(sy, dtype, Device::cuda);
  cpu.binary(op, a, b, y_cpu);
  gpu.binary(op, on_gpu(a), on_gpu(b), y_gpu);
  expect_close(y_gpu, y_cpu, tolerance(dtype), what + " forward");

  Tensor da_cpu = random_cpu(sa, dtype, 11), db_cpu = random_cpu(sb, dtype, 12);
  Tensor da_gpu = on_gpu(da_cpu), db_gpu = on_gpu(db_cpu);
  cpu.binary_backward(op, a, b, dy, with_da ? &da_cpu : nullptr, &db_cpu);
  gpu.binary_backward(op, on_gpu(a), on_gpu(b), on_gpu(dy), with_da ? &da_gpu : nullptr, &db_gpu);
  expect_close(da_gpu, da_cpu, tolerance(dtype), what + " da");
  expect_close(db_gpu, db_cpu, tolerance(dtype), what + " db");
}

constexpr Binary binary_ops[] = {Binary::add, Binary::sub, Binary::mul, Binary::div};

TEST_F(CudaBackendTest, BinaryWithoutBroadcastMatchesCpu) {
  for (DType dtype : dtypes)
    for (Binary op : binary_ops)
      for (bool with_da : {true, false})
        check_binary(cpu(), gpu(), op, dtype, {13, 29}, {13, 29}, with_da);
}

TEST_F(CudaBackendTest, BinaryWithBroadcastMatchesCpu) {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{37, 11}, {11}},        // the bias row of a linear layer
      {{11}, {37, 11}},        // the stretched input on the left
      {{7, 1}, {1, 5}},        // both stretched: an outer product
      {{3, 4, 5}, {3, 1, 5}},  // a middle axis
      {{4, 1, 3}, {2, 1}},     // different ranks, stretched on both sides
      {{2, 3, 4, 5}, {1}},     // a scalar against the largest rank
      {{6, 2}, {}},            // a rank-0 tensor
  };
  for (DType dtype : dtypes)
    for (Binary op : binary_ops)
      for (const auto& [sa, sb] : shapes) check_binary(cpu(), gpu(), op, dtype, sa, sb, true);
}

TEST_F(CudaBackendTest, FillCastAxpyAddBias) {
  for (DType dtype : dtypes) {
    Tensor y = Tensor::empty({5, 7}, dtype, Device::cuda);
    gpu().fill(y, 2.5);
    for (double v : y.to_vector()) EXPECT_EQ(v, 2.5);

    const DType other = dtype == DType::f32 ? DType::f64 : DType::f32;
    const Tensor x = random_cpu({9, 13}, dtype, 13);
    Tensor cast_cpu = Tensor::empty({9, 13}, other);
    Tensor cast_gpu = Tensor::empty({9, 13}, other, Device::cuda);
    cpu().cast(x, cast_cpu);
    gpu().cast(on_gpu(x), cast_gpu);
    EXPECT_EQ(cast_gpu.to_vector(), cast_cpu.to_vector()) << label("cast", dtype);
    Tensor same = Tensor::empty({9, 13}, dtype, Device::cuda);
    gpu().cast(on_gpu(x), same);
    EXPECT_EQ(same.to_vector(), x.to_vector()) << label("cast to itself", dtype);

    Tensor axpy_cpu = random_cpu({9, 13}, dtype, 14);
    Tensor axpy_gpu = on_gpu(axpy_cpu);
    cpu().axpy(-0.3, x, axpy_cpu);
    gpu().axpy(-0.3, on_gpu(x), axpy_gpu);
    expect_close(axpy_gpu, axpy_cpu, tolerance(dtype), label("axpy", dtype));

    const Tensor bias = random_cpu({13}, dtype, 15);
    Tensor biased_cpu = x.clone();
    Tensor biased_gpu = on_gpu(x);
    cpu().add_bias(bias, biased_cpu);
    gpu().add_bias(on_gpu(bias), biased_gpu);
    expect_close(biased_gpu, biased_cpu, tolerance(dtype), label("add_bias", dtype));
  }
}

TEST_F(CudaBackendTest, WhereMatchesCpu) {
  for (DType dtype : dtypes) {
    const Shape shape{9, 21};
    std::vector<double> mask = random_values(shape.numel(), 0, 1, 16);
    for (double& m : mask) m = m < 0.5 ? 0.0 : 1.0;
    const Tensor cond = Tensor::from(mask, shape, dtype);
    const Tensor a = random_cpu(shape, dtype, 17), b = random_cpu(shape, dtype, 18);
    Tensor y_cpu = Tensor::empty(shape, dtype);
    Tensor y_gpu = Tensor::empty(shape, dtype, Device::cuda);
    cpu().where(cond, a, b, y_cpu);
    gpu().where(on_gpu(cond), on_gpu(a), on_gpu(b), y_gpu);
    EXPECT_EQ(y_gpu.to_vector(), y_cpu.to_vector()) << label("where", dtype);

    const Tensor dy = random_cpu(shape, dtype, 19);
    Tensor da_cpu = random_cpu(shape, dtype, 20), db_cpu = random_cpu(shape, dtype, 21);
    Tensor da_gpu = on_gpu(da_cpu), db_gpu = on_gpu(db_cpu);
    cpu().where_backward(cond, dy, &da_cpu, &db_cpu);
    gpu().where_backward(on_gpu(cond), on_gpu(dy), &da_gpu, &db_gpu);
    expect_close(da_gpu, da_cpu, tolerance(dtype), label("where da", dtype));
    expect_close(db_gpu, db_cpu, tolerance(dtype), label("where db", dtype));
    cpu().where_backward(cond, dy, nullptr, &db_cpu);
    gpu().where_backward(on_gpu(cond), on_gpu(dy), nullptr, &db_gpu);
    expect_close(db_gpu, db_cpu, tolerance(dtype), label("where db alone", dtype));
  }
}

// --- reductions -----------------------------------------------------------------------------

TEST_F(CudaBackendTest, SumAllMatchesCpuAndRepeats) {
  for (DType dtype : dtypes)
    for (std::int64_t n : {1, 5, 1000, 100003, 3000001})
      for (bool accumulate : {false, true}) {
        const Tensor x = random_cpu({n}, dtype, 22);
        const Tensor x_gpu = on_gpu(x);
        Tensor y_cpu = Tensor::full({1}, 0.25, dtype);
        Tensor y_gpu = on_gpu(y_cpu);
        cpu().sum_all(x, 0.5, accumulate, y_cpu);
        gpu().sum_all(x_gpu, 0.5, accumulate, y_gpu);
        const std::string what = core::str("sum_all ", dtype, " n=", n, " acc=", accumulate);
        expect_close(y_gpu, y_cpu, tolerance(dtype), what);

        Tensor again = Tensor::full({1}, 0.25, dtype, Device::cuda);
        gpu().sum_all(x_gpu, 0.5, accumulate, again);
        EXPECT_EQ(again.item(), y_gpu.item()) << what << ": not deterministic";
      }
}

TEST_F(CudaBackendTest, SumAxisAndBroadcastAxisMatchCpu) {
  const std::vector<std::pair<Shape, int>> cases = {
      {{37, 11}, 0},   {{37, 11}, 1},     {{3, 4, 5}, 0}, {{3, 4, 5}, 1},
      {{3, 4, 5}, -1}, {{2, 3, 4, 5}, 2}, {{1000}, 0}};
  for (DType dtype : dtypes)
    for (const auto& [shape, axis] : cases)
      for (bool accumulate : {false, true}) {
        const std::string what = core::str("axis ", axis, " of ", shape, " ", dtype);
        const int ax = shape.normalize_axis(axis);
        Shape reduced;
        for (int i = 0; i < shape.rank(); ++i)
          if (i != ax) reduced.push_back(shape[i]);
        const Tensor x = random_cpu(shape, dtype, 23);
        Tensor y_cpu = random_cpu(reduced, dtype, 24);
        Tensor y_gpu = on_gpu(y_cpu);
        cpu().sum_axis(x, axis, 0.75, accumulate, y_cpu);
        gpu().sum_axis(on_gpu(x), axis, 0.75, accumulate, y_gpu);
        expect_close(y_gpu, y_cpu, tolerance(dtype), "sum_" + what);

        const Tensor dy = random_cpu(reduced, dtype, 25);
        Tensor dx_cpu = random_cpu(shape, dtype, 26);
        Tensor dx_gpu = on_gpu(dx_cpu);
        cpu().broadcast_axis(dy, axis, -1.5, dx_cpu);
        gpu().broadcast_axis(on_gpu(dy), axis, -1.5, dx_gpu);
        expect_close(dx_gpu, dx_cpu, tolerance(dtype), "broadcast_" + what);
      }
}

TEST_F(CudaBackendTest, SoftmaxFamilyMatchesCpu) {
  const Shape shape{9, 17}, rows{9};
  for (DType dtype : dtypes) {
    const Tensor x = random_cpu(shape, dtype, 27, -5, 5);
    Tensor lse_cpu = Tensor::empty(rows, dtype);
    Tensor lse_gpu = Tensor::empty(rows, dtype, Device::cuda);
    cpu().logsumexp(x, lse_cpu);
    gpu().logsumexp(on_gpu(x), lse_gpu);
    expect_close(lse_gpu, lse_cpu, tolerance(dtype), label("logsumexp", dtype));

    const Tensor dlse = random_cpu(rows, dtype, 28);
    Tensor dx_cpu = random_cpu(shape, dtype, 29);
    Tensor dx_gpu = on_gpu(dx_cpu);
    cpu().logsumexp_backward(x, lse_cpu, dlse, dx_cpu);
    gpu().logsumexp_backward(on_gpu(x), lse_gpu, on_gpu(dlse), dx_gpu);
    expect_close(dx_gpu, dx_cpu, tolerance(dtype), label("logsumexp_backward", dtype));

    for (bool log : {false, true}) {
      const std::string what = label(log ? "log_softmax" : "softmax", dtype);
      Tensor y_cpu = Tensor::empty(shape, dtype);
      Tensor y_gpu = Tensor::empty(shape, dtype, Device::cuda);
      cpu().softmax(x, log, y_cpu);
      gpu().softmax(on_gpu(x), log, y_gpu);
      expect_close(y_gpu, y_cpu, tolerance(dtype), what);

      const Tensor dy = random_cpu(shape, dtype, 30);
      Tensor gx_cpu = random_cpu(shape, dtype, 31);
      Tensor gx_gpu = on_gpu(gx_cpu);
      cpu().softmax_backward(y_cpu, dy, log, gx_cpu);
      gpu().softmax_backward(y_gpu, on_gpu(dy), log, gx_gpu);
      expect_close(gx_gpu, gx_cpu, tolerance(dtype), what + " backward");
    }
  }
}

TEST_F(CudaBackendTest, LogsumexpOfAllMinusInfinityIsMinusInfinity) {
  const double inf = std::numeric_limits<double>::infinity();
  const Tensor x = Tensor::from({-inf, -inf, -inf, 1.0, 2.0, 3.0}, {2, 3}, DType::f64);
  Tensor y = Tensor::empty({2}, DType::f64, Device::cuda);
  gpu().logsumexp(on_gpu(x), y);
  const std::vector<double> v = y.to_vector();
  EXPECT_EQ(v[0], -inf);
  EXPECT_NEAR(v[1], 3 + std::log(1 + std::exp(-1.0) + std::exp(-2.0)), 1e-12);
}

// --- copies and indexing --------------------------------------------------------------------

TEST_F(CudaBackendTest, CopyAxisMatchesCpu) {
  struct Case {
    Shape src, dst;
    int axis;
    std::int64_t src_begin, dst_begin, len;
  };
  const Case cases[] = {{{3, 6, 4}, {3, 5, 4}, 1, 2, 1, 3},
                        {{6, 4}, {9, 4}, 0, 1, 4, 5},
                        {{3, 4, 7}, {3, 4, 2}, -1, 5, 0, 2}};
  for (DType dtype : dtypes)
    for (const Case& c : cases)
      for (bool accumulate : {false, true}) {
        const Tensor src = random_cpu(c.src, dtype, 32);
        Tensor dst_cpu = random_cpu(c.dst, dtype, 33);
        Tensor dst_gpu = on_gpu(dst_cpu);
        cpu().copy_axis(src, c.axis, c.src_begin, dst_cpu, c.dst_begin, c.len, accumulate);
        gpu().copy_axis(on_gpu(src), c.axis, c.src_begin, dst_gpu, c.dst_begin, c.len, accumulate);
        expect_close(dst_gpu, dst_cpu, tolerance(dtype),
                     core::str("copy_axis ", c.src, " axis ", c.axis, " acc=", accumulate));
      }
}

TEST_F(CudaBackendTest, GatherAndScatterRowsMatchCpu) {
  const std::vector<std::int64_t> index = {6, 0, 3, 3, 1, 6, 3};
  for (DType dtype : dtypes) {
    const Tensor x = random_cpu({7, 3, 2}, dtype, 34);
    const Shape gathered{static_cast<std::int64_t>(index.size()), 3, 2};
    Tensor y_cpu = Tensor::empty(gathered, dtype);
    Tensor y_gpu = Tensor::empty(gathered, dtype, Device::cuda);
    cpu().gather_rows(x, index, y_cpu);
    gpu().gather_rows(on_gpu(x), index, y_gpu);
    EXPECT_EQ(y_gpu.to_vector(), y_cpu.to_vector()) << label("gather_rows", dtype);

    // Repeated indices: rows 3 and 6 receive several contributions, summed in a fixed order.
    const Tensor dy = random_cpu(gathered, dtype, 35);
    Tensor dx_cpu = random_cpu({7, 3, 2}, dtype, 36);
    Tensor dx_gpu = on_gpu(dx_cpu);
    cpu().scatter_add_rows(dy, index, dx_cpu);
    gpu().scatter_add_rows(on_gpu(dy), index, dx_gpu);
    EXPECT_EQ(dx_gpu.to_vector(), dx_cpu.to_vector()) << label("scatter_add_rows", dtype);

    const std::vector<std::int64_t> bad = {0, 7};
    EXPECT_THROW(gpu().gather_rows(on_gpu(x), bad, y_gpu), core::ValueError);
  }
}

// --- what the GPU does not do ---------------------------------------------------------------

TEST_F(CudaBackendTest, HostTensorsAreRefused) {
  const Tensor host = Tensor::zeros({4}, DType::f32);
  Tensor dev = Tensor::zeros({4}, DType::f32, Device::cuda);
  EXPECT_THROW(gpu().unary(Unary::relu, {}, host, dev), core::DeviceError);
}

}  // namespace
}  // namespace asbi::cuda
