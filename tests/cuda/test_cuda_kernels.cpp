// The CUDA kernels of issue 6 against the CPU backend: random fills (same counters, same numbers),
// the fused Adam step, and the fused linear epilogue. Every test skips on a machine without a
// CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/backend.hpp"
#include "core/rng.hpp"
#include "core/tensor.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda_test_util.hpp"

namespace asbi::cuda {
namespace {

using core::Device;
using core::DType;
using core::Shape;
using core::Tensor;

class CudaKernelsTest : public test_util::CudaTest {};

// The unsigned integer holding the bits of T.
template <typename T>
using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

// Distance in units in the last place: the number of representable values between a and b
// (0 when equal; signed zeros count as equal).
template <typename T>
std::int64_t ulp_distance(T a, T b) {
  using Bits = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
  auto ordered = [](T x) {
    const Bits i = std::bit_cast<Bits>(x);
    return i < 0 ? std::numeric_limits<Bits>::min() - i : i;  // monotone in x
  };
  const std::int64_t d = static_cast<std::int64_t>(ordered(a)) - ordered(b);
  return d < 0 ? -d : d;
}

// --- random fills ---------------------------------------------------------------------------

constexpr std::uint64_t kOffsets[] = {0, 1, 3, 6, 7, (std::uint64_t{1} << 32) - 5};
constexpr std::int64_t kLengths[] = {1, 2, 5, 63, 1001, 100003};

// Uniforms: the same bits as the CPU for every offset alignment and length.
template <typename T>
void expect_uniforms_identical(core::Backend& cpu, core::Backend& gpu) {
  const DType dtype = core::dtype_of<T>();
  for (std::uint64_t offset : kOffsets)
    for (std::int64_t n : kLengths) {
      Tensor want = Tensor::empty({n}, dtype);
      Tensor got = Tensor::empty({n}, dtype, Device::cuda);
      cpu.random_uniform(0xC0FFEE, 9, offset, want);
      gpu.random_uniform(0xC0FFEE, 9, offset, got);
      const Tensor host = got.to(Device::cpu);
      const T* g = host.data<T>();
      const T* w = want.data<T>();
      for (std::int64_t i = 0; i < n; ++i)
        ASSERT_EQ(std::bit_cast<Bits<T>>(g[i]), std::bit_cast<Bits<T>>(w[i]))
            << core::name(dtype) << " offset " << offset << " n " << n << " element " << i;
    }
}

TEST_F(CudaKernelsTest, UniformsAreTheCpuBitsForEveryOffsetAndLength) {
  expect_uniforms_identical<float>(cpu(), gpu());
  expect_uniforms_identical<double>(cpu(), gpu());
}

// Normals: the same Box–Muller of the same uniforms; only log, sin and cos differ (glibc's are
// within ~0.8 ulp, CUDA documents 1 ulp for log and 2 for sin and cos), so the results stay
// within a few ulp, and the great majority agree to one.
template <typename T>
void expect_normals_within_ulps(core::Backend& cpu, core::Backend& gpu) {
  const DType dtype = core::dtype_of<T>();
  std::int64_t worst = 0, within_one = 0, total = 0;
  for (std::uint64_t offset : kOffsets)
    for (std::int64_t n : kLengths) {
      Tensor want = Tensor::empty({n}, dtype);
      Tensor got = Tensor::empty({n}, dtype, Device::cuda);
      cpu.random_normal(77, 1, offset, want);
      gpu.random_normal(77, 1, offset, got);
      const Tensor host = got.to(Device::cpu);
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t d = ulp_distance(host.data<T>()[i], want.data<T>()[i]);
        ASSERT_LE(d, 4) << core::name(dtype) << " offset " << offset << " n " << n << " element "
                        << i << ": GPU " << host.data<T>()[i] << ", CPU " << want.data<T>()[i];
        worst = std::max(worst, d);
        within_one += d <= 1;
        ++total;
      }
    }
  EXPECT_GE(double(within_one), 0.9 * double(total)) << core::name(dtype);
  std::cout << core::name(dtype) << " normals: worst " << worst << " ulp, "
            << 100.0 * double(within_one) / double(total) << "% within 1 ulp\n";
}

TEST_F(CudaKernelsTest, NormalsAreTheCpuNumbersWithinAFewUlp) {
  expect_normals_within_ulps<float>(cpu(), gpu());
  expect_normals_within_ulps<double>(cpu(), gpu());
}

TEST_F(CudaKernelsTest, FillsWriteNothingOutsideTheTensor) {
  // A view of the middle of a larger buffer: the guard elements on both sides must survive.
  Tensor buffer = Tensor::full({40}, -7.0, DType::f32).to(Device::cuda);
  Tensor middle = buffer.rows(3, 36);
  gpu().random_normal(5, 6, 1, middle);
  gpu().random_uniform(5, 6, 2, middle);
  const std::vector<double> v = buffer.to_vector();
  for (int i : {0, 1, 2, 36, 37, 38, 39}) EXPECT_EQ(v[std::size_t(i)], -7.0) << i;
}

TEST_F(CudaKernelsTest, DropoutMaskIsTheCpuMask) {
  for (DType dtype : {DType::f32, DType::f64})
    for (std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{5}}) {
      const std::int64_t n = 4099;
      Tensor want = Tensor::empty({n}, dtype);
      Tensor got = Tensor::empty({n}, dtype, Device::cuda);
      cpu().dropout_mask(31, 2, offset, 0.3, 1 / 0.7, want);
      gpu().dropout_mask(31, 2, offset, 0.3, 1 / 0.7, got);
      EXPECT_EQ(got.to_vector(), want.to_vector()) << core::name(dtype) << " offset " << offset;
    }
}

TEST_F(CudaKernelsTest, TensorFillsDispatchOnTheTensorsDevice) {
  core::Rng on_cpu(3, 4, 5), on_gpu(3, 4, 5);
  Tensor want = Tensor::empty({7, 3}, DType::f32);
  Tensor got = Tensor::empty({7, 3}, DType::f32, Device::cuda);
  core::fill_uniform(on_cpu, want);
  core::fill_uniform(on_gpu, got);
  EXPECT_EQ(got.to_vector(), want.to_vector());
  EXPECT_EQ(on_gpu.counter(), on_cpu.counter());
}

// --- fused Adam -----------------------------------------------------------------------------

// Values in [-1, 1) from a fixed sequence, on the CPU.
Tensor pattern(std::int64_t n, DType dtype, std::uint64_t seed) {
  Tensor t = Tensor::empty({n}, DType::f64);
  core::fill_uniform(seed, 0, 0, std::span<double>(t.data<double>(), std::size_t(n)));
  for (std::int64_t i = 0; i < n; ++i) t.data<double>()[i] = 2 * t.data<double>()[i] - 1;
  return t.to(dtype);
}

// One optimizer's worth of tensors: values, gradients and moments, each of its own length.
struct AdamState {
  std::vector<Tensor> value, grad, m, v;
  AdamState(const std::vector<std::int64_t>& lengths, DType dtype, Device device) {
    for (std::size_t k = 0; k < lengths.size(); ++k) {
      value.push_back(pattern(lengths[k], dtype, 3 * k).to(device));
      grad.push_back(Tensor::zeros({lengths[k]}, dtype, device));
      m.push_back(Tensor::zeros({lengths[k]}, dtype, device));
      v.push_back(Tensor::zeros({lengths[k]}, dtype, device));
    }
  }
  std::vector<core::AdamTensors> tensors() {
    std::vector<core::AdamTensors> out;
    for (std::size_t k = 0; k < value.size(); ++k)
      out.push_back({&value[k], &grad[k], &m[k], &v[k]});
    return out;
  }
};

// More tensors than one launch's descriptor holds (96), of lengths from 1 to several grid widths,
// through five steps of Adam with an L2 penalty and of AdamW: the GPU follows the CPU.
TEST_F(CudaKernelsTest, AdamStepMatchesCpuOverManyTensors) {
  std::vector<std::int64_t> lengths;
  for (int k = 0; k < 130; ++k) lengths.push_back(1 + (k * 7919) % 3000);
  lengths[5] = 300000;  // longer than one grid-stride pass
  for (DType dtype : {DType::f32, DType::f64})
    for (bool decoupled : {false, true}) {
      AdamState on_cpu(lengths, dtype, Device::cpu), on_gpu(lengths, dtype, Device::cuda);
      for (int t = 1; t <= 5; ++t) {
        for (std::size_t k = 0; k < lengths.size(); ++k) {
          const Tensor g = pattern(lengths[k], dtype, 1000 * std::uint64_t(t) + k);
          on_cpu.grad[k].copy_from(g);
          on_gpu.grad[k].copy_from(g);
        }
        const double lr = 0.01, wd = 0.1, beta1 = 0.9, beta2 = 0.999;
        const core::AdamStep step{.beta1 = beta1,
                                  .beta2 = beta2,
                                  .eps = 1e-8,
                                  .step_size = lr / (1 - std::pow(beta1, t)),
                                  .bias_correction2_sqrt = std::sqrt(1 - std::pow(beta2, t)),
                                  .l2 = decoupled ? 0.0 : wd,
                                  .decay = decoupled ? 1 - lr * wd : 1.0};
        cpu().adam_step(step, on_cpu.tensors());
        gpu().adam_step(step, on_gpu.tensors());
      }
      const double tol = dtype == DType::f32 ? 1e-5 : 1e-12;
      for (std::size_t k = 0; k < lengths.size(); ++k) {
        const std::vector<double> want = on_cpu.value[k].to_vector(),
                                  got = on_gpu.value[k].to_vector(),
                                  want_v = on_cpu.v[k].to_vector(), got_v = on_gpu.v[k].to_vector();
        for (std::size_t i = 0; i < want.size(); ++i) {
          ASSERT_NEAR(got[i], want[i], tol * std::max(1.0, std::abs(want[i])))
              << core::name(dtype) << (decoupled ? " AdamW" : " Adam") << " tensor " << k
              << " element " << i;
          ASSERT_NEAR(got_v[i], want_v[i], tol * std::max(1e-3, std::abs(want_v[i])))
              << "second moment, tensor " << k << " element " << i;
        }
      }
    }
}

// Parameters of both dtypes in one call: each dtype goes in its own launch.
TEST_F(CudaKernelsTest, AdamStepTakesMixedDtypesInOneCall) {
  const std::vector<std::int64_t> lengths = {3, 1000, 17};
  AdamState f_cpu(lengths, DType::f32, Device::cpu), f_gpu(lengths, DType::f32, Device::cuda);
  AdamState d_cpu(lengths, DType::f64, Device::cpu), d_gpu(lengths, DType::f64, Device::cuda);
  for (AdamState* s : {&f_cpu, &f_gpu, &d_cpu, &d_gpu})
    for (std::size_t k = 0; k < lengths.size(); ++k)
      s->grad[k].copy_from(pattern(lengths[k], s->grad[k].dtype(), 50 + k).to(s->grad[k].device()));
  const core::AdamStep step{.step_size = 0.01, .bias_correction2_sqrt = 0.0447, .l2 = 0.1};
  auto both = [](AdamState& a, AdamState& b) {
    std::vector<core::AdamTensors> t = a.tensors(), u = b.tensors();
    t.insert(t.end(), u.begin(), u.end());
    return t;
  };
  cpu().adam_step(step, both(f_cpu, d_cpu));
  gpu().adam_step(step, both(f_gpu, d_gpu));
  for (std::size_t k = 0; k < lengths.size(); ++k) {
    const std::vector<double> fw = f_cpu.value[k].to_vector(), fg = f_gpu.value[k].to_vector();
    const std::vector<double> dw = d_cpu.value[k].to_vector(), dg = d_gpu.value[k].to_vector();
    for (std::size_t i = 0; i < fw.size(); ++i) {
      EXPECT_NEAR(fg[i], fw[i], 1e-6) << "float32 tensor " << k << " element " << i;
      EXPECT_NEAR(dg[i], dw[i], 1e-14) << "float64 tensor " << k << " element " << i;
    }
  }
}

// --- fused linear epilogue ------------------------------------------------------------------

// Forward and backward (with and without the bias sum, with fz given and recomputed) against the
// CPU, on a shape whose rows span many chunks of the bias reduction and whose width is not a
// multiple of its 32-column tiles; and the bias gradient repeats bit for bit.
TEST_F(CudaKernelsTest, LinearEpilogueMatchesCpu) {
  const Shape shape{5000, 70};
  const std::pair<core::Unary, core::UnaryParams> activations[] = {
      {core::Unary::relu, {}},    {core::Unary::leaky_relu, {0.01}}, {core::Unary::elu, {1.0}},
      {core::Unary::silu, {}},    {core::Unary::gelu, {}},           {core::Unary::tanh, {}},
      {core::Unary::sigmoid, {}}, {core::Unary::softplus, {}},       {core::Unary::identity, {}},
  };
  for (DType dtype : {DType::f32, DType::f64})
    for (auto [f, p] : activations)
      for (bool with_residual : {false, true}) {
        const std::string what =
            core::str(core::name(f), " ", dtype, with_residual ? " residual" : "");
        const double tol = dtype == DType::f32 ? 2e-5 : 1e-12;
        const Tensor xw = pattern(shape.numel(), dtype, 1).reshape(shape);
        const Tensor b = pattern(70, dtype, 2),
                     dy = pattern(shape.numel(), dtype, 4).reshape(shape);
        const Tensor r = with_residual ? pattern(shape.numel(), dtype, 3).reshape(shape) : Tensor();
        Tensor z = xw.clone(), y = Tensor::empty(shape, dtype);
        Tensor z_gpu = xw.to(Device::cuda), y_gpu = Tensor::empty(shape, dtype, Device::cuda);
        cpu().linear_epilogue(b, f, p, r, z, y);
        gpu().linear_epilogue(b.to(Device::cuda), f, p,
                              with_residual ? r.to(Device::cuda) : Tensor(), z_gpu, y_gpu);
        auto expect_near = [&](const Tensor& got, const Tensor& want, double scale,
                               const char* name) {
          const std::vector<double> g = got.to_vector(), w = want.to_vector();
          for (std::size_t i = 0; i < w.size(); ++i)
            ASSERT_NEAR(g[i], w[i], tol * std::max(scale, std::abs(w[i])))
                << what << " " << name << " element " << i;
        };
        expect_near(z_gpu, z, 1, "z");
        expect_near(y_gpu, y, 1, "y");

        const Tensor fz = with_residual ? Tensor() : y;
        const Tensor fz_gpu = with_residual ? Tensor() : y_gpu;
        Tensor dz = Tensor::empty(shape, dtype), db = pattern(70, dtype, 5);
        Tensor dz_gpu = Tensor::empty(shape, dtype, Device::cuda), db_gpu = db.to(Device::cuda);
        cpu().linear_epilogue_backward(f, p, z, fz, dy, dz, &db);
        gpu().linear_epilogue_backward(f, p, z_gpu, fz_gpu, dy.to(Device::cuda), dz_gpu, &db_gpu);
        expect_near(dz_gpu, dz, 1, "dz");
        expect_near(db_gpu, db, 100, "db");  // sums of 5000 terms of size ≤ 1

        Tensor dz_only = Tensor::empty(shape, dtype, Device::cuda);
        gpu().linear_epilogue_backward(f, p, z_gpu, fz_gpu, dy.to(Device::cuda), dz_only, nullptr);
        expect_near(dz_only, dz, 1, "dz without the bias sum");

        Tensor db_again = pattern(70, dtype, 5).to(Device::cuda);
        gpu().linear_epilogue_backward(f, p, z_gpu, fz_gpu, dy.to(Device::cuda), dz_gpu, &db_again);
        EXPECT_EQ(db_again.to_vector(), db_gpu.to_vector()) << what << ": db must repeat exactly";
      }
}

// --- LULinear's triangular solves ----------------------------------------------------------

// x = U⁻¹ L⁻¹ y row by row: the same substitutions in double on both devices, so the results
// agree to the last float rounding; L's diagonal holds garbage that must not be read.
TEST_F(CudaKernelsTest, LuSolveRowsMatchesTheCpu) {
  const std::int64_t rows = 1031, d = 7;
  for (DType dtype : {DType::f32, DType::f64}) {
    std::vector<double> l = pattern(d * d, DType::f64, 1).to_vector();
    std::vector<double> u = pattern(d * d, DType::f64, 2).to_vector();
    for (std::int64_t i = 0; i < d; ++i) {
      l[static_cast<std::size_t>(i * d + i)] = 1e6;
      u[static_cast<std::size_t>(i * d + i)] = 1.5 + 0.1 * static_cast<double>(i);
      for (std::int64_t j = 0; j < i; ++j) u[static_cast<std::size_t>(i * d + j)] = 0.0;
    }
    const Tensor lower = Tensor::from(l, {d, d}, dtype), upper = Tensor::from(u, {d, d}, dtype);
    const Tensor y = pattern(rows * d, dtype, 3).reshape({rows, d});
    Tensor x_cpu = Tensor::empty({rows, d}, dtype);
    cpu().lu_solve_rows(lower, upper, y, x_cpu);
    Tensor x_gpu = Tensor::empty({rows, d}, dtype, Device::cuda);
    gpu().lu_solve_rows(lower.to(Device::cuda), upper.to(Device::cuda), y.to(Device::cuda), x_gpu);
    test_util::expect_close(x_gpu, x_cpu, test_util::tolerance(dtype),
                            core::str("lu_solve ", dtype));
  }
  Tensor bad = Tensor::empty({rows, d + 1}, DType::f32, Device::cuda);
  const Tensor square = Tensor::zeros({d, d}, DType::f32, Device::cuda);
  EXPECT_THROW(gpu().lu_solve_rows(square, square, bad, bad), core::ShapeError);
}

}  // namespace
}  // namespace asbi::cuda
