// The CPU backend's kernels against naive loops written as directly as possible from the contract
// in core/backend.hpp, in float and double, on odd sizes; then the same kernels run with one and
// two OpenMP threads, which must agree bit for bit where each output has a single writer.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "core/backend.hpp"
#include "core/scalar_math.hpp"
#include "core/tensor.hpp"

namespace asbi::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Backend& cpu() { return backend(Device::cpu); }

std::vector<double> random_values(std::int64_t n, std::uint64_t seed, double lo = -2,
                                  double hi = 2) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<std::size_t>(n));
  for (double& x : v) x = u(gen);
  return v;
}

Tensor random_tensor(const Shape& s, DType dtype, std::uint64_t seed, double lo = -2,
                     double hi = 2) {
  return Tensor::from(random_values(s.numel(), seed, lo, hi), s, dtype);
}

// The values a tensor holds, read back as double (float32 values are exact in double).
std::vector<double> values(const Tensor& t) { return t.to_vector(); }

// Relative-to-magnitude comparison: the tolerance is per dtype, scaled by `magnitude` (the size
// of the terms that were summed, so that cancellation does not make the test flaky).
void expect_close(const std::vector<double>& got, const std::vector<double>& want, DType dtype,
                  const std::vector<double>& magnitude = {}, const char* what = "") {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double tol = dtype == DType::f32 ? 2e-6 : 1e-14;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double m = std::max(1.0, magnitude.empty() ? std::abs(want[i]) : magnitude[i]);
    if (std::isinf(want[i])) {
      EXPECT_EQ(got[i], want[i]) << what << " [" << i << "]";
    } else {
      EXPECT_NEAR(got[i], want[i], tol * m) << what << " [" << i << "]";
    }
  }
}

// The flat offset in `in` of the element that the flat index `i` of the broadcast shape `out`
// reads (NumPy rules: align from the right, size-1 dimensions stretch).
std::int64_t broadcast_source(const Shape& in, const Shape& out, std::int64_t i) {
  std::int64_t offset = 0, stride = 1;
  for (int d = out.rank() - 1, k = in.rank() - 1; d >= 0; --d, --k) {
    const std::int64_t coord = i % out[d];
    i /= out[d];
    if (k >= 0) {
      if (in[k] != 1) offset += coord * stride;
      stride *= in[k];
    }
  }
  return offset;
}

const DType kDtypes[] = {DType::f32, DType::f64};

// --- gemm ---------------------------------------------------------------------------------------

TEST(CpuKernels, GemmAllTransposesAndBetas) {
  struct Size {
    std::int64_t m, k, n;
  };
  std::uint64_t seed = 1;
  for (DType dtype : kDtypes)
    for (Size s : {Size{7, 5, 3}, Size{1, 9, 1}, Size{37, 29, 41}})
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (double beta : {0.0, 1.0, 0.5}) {
            const double alpha = 1.25;
            const Shape sa = ta ? Shape{s.k, s.m} : Shape{s.m, s.k};
            const Shape sb = tb ? Shape{s.n, s.k} : Shape{s.k, s.n};
            const Tensor a = random_tensor(sa, dtype, ++seed), b = random_tensor(sb, dtype, ++seed);
            Tensor c = random_tensor({s.m, s.n}, dtype, ++seed);
            const std::vector<double> av = values(a), bv = values(b), c0 = values(c);
            // BLAS convention: beta = 0 means C is not read, so NaN there must not leak through.
            if (beta == 0) cpu().fill(c, std::numeric_limits<double>::quiet_NaN());
            cpu().gemm(ta, tb, alpha, a, b, beta, c);
            std::vector<double> want(c0.size()), mag(c0.size());
            for (std::int64_t i = 0; i < s.m; ++i)
              for (std::int64_t j = 0; j < s.n; ++j) {
                double acc = 0, abs_acc = 0;
                for (std::int64_t p = 0; p < s.k; ++p) {
                  const double x = av[static_cast<std::size_t>(ta ? p * s.m + i : i * s.k + p)];
                  const double y = bv[static_cast<std::size_t>(tb ? j * s.k + p : p * s.n + j)];
                  acc += x * y;
                  abs_acc += std::abs(x * y);
                }
                const auto ij = static_cast<std::size_t>(i * s.n + j);
                want[ij] = alpha * acc + (beta == 0 ? 0.0 : beta * c0[ij]);
                mag[ij] = alpha * abs_acc + std::abs(beta * c0[ij]);
              }
            SCOPED_TRACE(testing::Message() << name(dtype) << " " << s.m << "x" << s.k << "x"
                                            << s.n << " ta=" << ta << " tb=" << tb
                                            << " beta=" << beta);
            expect_close(values(c), want, dtype, mag);
          }
}

TEST(CpuKernels, AddBias) {
  for (DType dtype : kDtypes) {
    Tensor y = random_tensor({3, 2, 5}, dtype, 11);
    const Tensor bias = random_tensor({5}, dtype, 12);
    const std::vector<double> y0 = values(y), bv = values(bias);
    cpu().add_bias(bias, y);
    std::vector<double> want(y0);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] += bv[i % 5];
    expect_close(values(y), want, dtype);
  }
}

// --- elementwise ---------------------------------------------------------------------------------

TEST(CpuKernels, FillCastAxpy) {
  for (DType dtype : kDtypes) {
    Tensor y = Tensor::empty({3, 7}, dtype);
    cpu().fill(y, -0.5);
    EXPECT_EQ(values(y), std::vector<double>(21, -0.5));
    const Tensor x = random_tensor({3, 7}, dtype, 21);
    cpu().axpy(2.0, x, y);
    std::vector<double> want(21);
    for (std::size_t i = 0; i < 21; ++i) want[i] = -0.5 + 2.0 * values(x)[i];
    expect_close(values(y), want, dtype);
  }
  const Tensor d = random_tensor({5}, DType::f64, 22);
  Tensor f = Tensor::empty({5}, DType::f32);
  cpu().cast(d, f);
  for (std::int64_t i = 0; i < 5; ++i)
    EXPECT_EQ(f.at(i), static_cast<double>(static_cast<float>(d.at(i))));
  Tensor back = Tensor::empty({5}, DType::f64);
  cpu().cast(f, back);
  EXPECT_EQ(values(back), values(f));
}

double reference_unary(Unary op, UnaryParams p, double x) {
  switch (op) {
    case Unary::neg: return -x;
    case Unary::relu: return std::max(x, 0.0);
    case Unary::leaky_relu: return x > 0 ? x : p.a * x;
    case Unary::elu: return x > 0 ? x : p.a * std::expm1(x);
    case Unary::silu: return x / (1 + std::exp(-x));
    case Unary::gelu: return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
    case Unary::tanh: return std::tanh(x);
    case Unary::sigmoid: return 1 / (1 + std::exp(-x));
    case Unary::softplus: return std::log1p(std::exp(x));
    case Unary::exp: return std::exp(x);
    case Unary::log: return std::log(x);
    case Unary::log1p: return std::log1p(x);
    case Unary::square: return x * x;
    case Unary::sqrt: return std::sqrt(x);
    case Unary::abs: return std::abs(x);
    case Unary::pow: return std::pow(x, p.a);
    case Unary::clamp: return std::clamp(x, p.a, p.b);
    case Unary::identity: return x;
  }
  return 0;
}

TEST(CpuKernels, UnaryMatchesTheTextbookFormulas) {
  const std::pair<Unary, UnaryParams> ops[] = {
      {Unary::neg, {}},        {Unary::relu, {}},      {Unary::leaky_relu, {0.1}},
      {Unary::elu, {0.7}},     {Unary::silu, {}},      {Unary::gelu, {}},
      {Unary::tanh, {}},       {Unary::sigmoid, {}},   {Unary::softplus, {}},
      {Unary::exp, {}},        {Unary::log, {}},       {Unary::log1p, {}},
      {Unary::square, {}},     {Unary::sqrt, {}},      {Unary::abs, {}},
      {Unary::pow, {1.5}},     {Unary::clamp, {-0.3, 0.8}}, {Unary::identity, {}},
  };
  for (DType dtype : kDtypes)
    for (auto [op, p] : ops) {
      const bool positive = op == Unary::log || op == Unary::sqrt || op == Unary::pow;
      const double lo = positive ? 0.1 : op == Unary::log1p ? -0.9 : -3;
      const Tensor x = random_tensor({4, 9}, dtype, 31, lo, 3);
      Tensor y = Tensor::empty(x.shape(), dtype);
      cpu().unary(op, p, x, y);
      std::vector<double> want;
      for (double v : values(x)) want.push_back(reference_unary(op, p, v));
      // float32: libm's float functions may differ from the double result by a few ulps.
      const std::vector<double> got = values(y);
      for (std::size_t i = 0; i < want.size(); ++i)
        EXPECT_NEAR(got[i], want[i], (dtype == DType::f32 ? 1e-6 : 1e-14) *
                                         std::max(1.0, std::abs(want[i])))
            << name(op) << " " << name(dtype) << " x=" << values(x)[i];
    }
}

TEST(CpuKernels, UnaryIsStableAtExtremes) {
  const Tensor x = Tensor::from({-1000, -80, 0, 80, 1000}, {5}, DType::f64);
  Tensor y = Tensor::empty({5}, DType::f64);
  cpu().unary(Unary::sigmoid, {}, x, y);
  EXPECT_EQ(y.at(0), 0.0);
  EXPECT_NEAR(y.at(1), reference_unary(Unary::sigmoid, {}, -80), 1e-14 * y.at(1));
  EXPECT_GT(y.at(1), 0.0);  // tiny, not flushed: the negative branch never forms exp(80)
  EXPECT_EQ(y.at(2), 0.5);
  EXPECT_EQ(y.at(3), 1.0);
  EXPECT_EQ(y.at(4), 1.0);
  cpu().unary(Unary::softplus, {}, x, y);
  EXPECT_EQ(y.at(0), 0.0);
  EXPECT_EQ(y.at(4), 1000.0);
  EXPECT_NEAR(y.at(3), 80.0, 1e-13);
  cpu().unary(Unary::silu, {}, x, y);
  EXPECT_EQ(y.at(0), -0.0);
  EXPECT_EQ(y.at(4), 1000.0);
  // The derivative kernels too: finite everywhere, saturating at 0 and 1.
  Tensor dx = Tensor::zeros({5}, DType::f64);
  const Tensor ones = Tensor::full({5}, 1.0, DType::f64);
  cpu().unary(Unary::sigmoid, {}, x, y);
  cpu().unary_backward(Unary::sigmoid, {}, x, y, ones, dx);
  for (double g : values(dx)) EXPECT_TRUE(std::isfinite(g));
  EXPECT_EQ(dx.at(2), 0.25);
}

TEST(CpuKernels, UnaryBackwardAccumulates) {
  for (DType dtype : kDtypes) {
    const Tensor x = random_tensor({3, 5}, dtype, 41), dy = random_tensor({3, 5}, dtype, 42);
    Tensor y = Tensor::empty({3, 5}, dtype);
    cpu().unary(Unary::tanh, {}, x, y);
    Tensor dx = random_tensor({3, 5}, dtype, 43);
    const std::vector<double> dx0 = values(dx), xv = values(x), g = values(dy);
    cpu().unary_backward(Unary::tanh, {}, x, y, dy, dx);
    std::vector<double> want(dx0);
    for (std::size_t i = 0; i < want.size(); ++i) {
      const double t = std::tanh(xv[i]);
      want[i] += g[i] * (1 - t * t);
    }
    expect_close(values(dx), want, dtype);
  }
}

double binary_ref(Binary op, double a, double b) {
  switch (op) {
    case Binary::add: return a + b;
    case Binary::sub: return a - b;
    case Binary::mul: return a * b;
    case Binary::div: return a / b;
  }
  return 0;
}

struct ShapePair {
  Shape a, b;
};
const ShapePair kBroadcasts[] = {
    {{3, 5}, {3, 5}},     {{3, 5}, {5}},          {{5}, {3, 5}},        {{3, 5}, {3, 1}},
    {{3, 1}, {3, 5}},     {{3, 5}, {1}},          {{1}, {3, 5}},        {{3, 1}, {1, 5}},
    {{2, 3, 5}, {3, 5}},  {{2, 3, 5}, {2, 1, 5}}, {{2, 1, 5}, {3, 1}},  {{2, 3, 1, 4}, {3, 2, 1}},
    {{2, 1, 3, 1}, {4, 1, 5}}, {{1, 1, 1, 7}, {2, 3, 4, 1}},
};

TEST(CpuKernels, BinaryBroadcastingForwardAndBackward) {
  std::uint64_t seed = 100;
  for (DType dtype : kDtypes)
    for (const ShapePair& sp : kBroadcasts)
      for (Binary op : {Binary::add, Binary::sub, Binary::mul, Binary::div}) {
        SCOPED_TRACE(testing::Message() << name(op) << " " << sp.a << " " << sp.b << " "
                                        << name(dtype));
        const Shape out = broadcast_shapes(sp.a, sp.b);
        const Tensor a = random_tensor(sp.a, dtype, ++seed);
        const Tensor b = random_tensor(sp.b, dtype, ++seed, 0.5, 2);  // a safe divisor
        Tensor y = Tensor::empty(out, dtype);
        cpu().binary(op, a, b, y);
        const std::vector<double> av = values(a), bv = values(b);
        std::vector<double> want(static_cast<std::size_t>(out.numel()));
        for (std::int64_t i = 0; i < out.numel(); ++i)
          want[static_cast<std::size_t>(i)] =
              binary_ref(op, av[static_cast<std::size_t>(broadcast_source(sp.a, out, i))],
                         bv[static_cast<std::size_t>(broadcast_source(sp.b, out, i))]);
        expect_close(values(y), want, dtype);

        // Backward: gradients accumulate onto what is there, summed over stretched dimensions.
        const Tensor dy = random_tensor(out, dtype, ++seed);
        Tensor da = random_tensor(sp.a, dtype, ++seed), db = random_tensor(sp.b, dtype, ++seed);
        std::vector<double> want_a = values(da), want_b = values(db);
        const std::vector<double> g = values(dy);
        std::vector<double> mag_a(want_a.size(), 0), mag_b(want_b.size(), 0);
        for (std::int64_t i = 0; i < out.numel(); ++i) {
          const auto ia = static_cast<std::size_t>(broadcast_source(sp.a, out, i));
          const auto ib = static_cast<std::size_t>(broadcast_source(sp.b, out, i));
          const double x = av[ia], w = bv[ib], gi = g[static_cast<std::size_t>(i)];
          const double ga = op == Binary::mul ? w : op == Binary::div ? 1 / w : 1;
          const double gb = op == Binary::add   ? 1
                            : op == Binary::sub ? -1
                            : op == Binary::mul ? x
                                                : -x / (w * w);
          want_a[ia] += gi * ga;
          want_b[ib] += gi * gb;
          mag_a[ia] += std::abs(gi * ga);
          mag_b[ib] += std::abs(gi * gb);
        }
        cpu().binary_backward(op, a, b, dy, &da, &db);
        expect_close(values(da), want_a, dtype, mag_a, "da");
        expect_close(values(db), want_b, dtype, mag_b, "db");
        // One gradient only: the other is skipped and left alone.
        Tensor da_only = Tensor::zeros(sp.a, dtype);
        cpu().binary_backward(op, a, b, dy, &da_only, nullptr);
        std::vector<double> only_a(want_a.size(), 0), da0 = values(da);
        for (std::int64_t i = 0; i < out.numel(); ++i) {
          const auto ia = static_cast<std::size_t>(broadcast_source(sp.a, out, i));
          const auto ib = static_cast<std::size_t>(broadcast_source(sp.b, out, i));
          const double w = bv[ib];
          only_a[ia] += g[static_cast<std::size_t>(i)] *
                        (op == Binary::mul ? w : op == Binary::div ? 1 / w : 1);
        }
        expect_close(values(da_only), only_a, dtype, mag_a, "da only");
      }
}

TEST(CpuKernels, WhereAndItsBackward) {
  for (DType dtype : kDtypes) {
    const Tensor cond = Tensor::from({1, 0, 0, 1, 2, 0}, {2, 3}, dtype);
    const Tensor a = random_tensor({2, 3}, dtype, 51), b = random_tensor({2, 3}, dtype, 52);
    Tensor y = Tensor::empty({2, 3}, dtype);
    cpu().where(cond, a, b, y);
    const std::vector<double> c = values(cond), av = values(a), bv = values(b);
    for (std::size_t i = 0; i < 6; ++i) EXPECT_EQ(values(y)[i], c[i] != 0 ? av[i] : bv[i]);
    const Tensor dy = Tensor::from({1, 2, 3, 4, 5, 6}, {2, 3}, dtype);
    Tensor da = Tensor::full({2, 3}, 10, dtype), db = Tensor::full({2, 3}, 10, dtype);
    cpu().where_backward(cond, dy, &da, &db);
    EXPECT_EQ(values(da), (std::vector<double>{11, 10, 10, 14, 15, 10}));
    EXPECT_EQ(values(db), (std::vector<double>{10, 12, 13, 10, 10, 16}));
    cpu().where_backward(cond, dy, nullptr, &db);
    EXPECT_EQ(values(db), (std::vector<double>{10, 14, 16, 10, 10, 22}));
  }
}

// --- the fused linear epilogue ------------------------------------------------------------------

// Every activation the networks use, with the parameters nn gives them.
const std::pair<Unary, UnaryParams> kActivations[] = {
    {Unary::relu, {}},     {Unary::leaky_relu, {0.01}}, {Unary::elu, {1.0}},
    {Unary::silu, {}},     {Unary::gelu, {}},           {Unary::tanh, {}},
    {Unary::sigmoid, {}},  {Unary::softplus, {}},       {Unary::identity, {}},
};

// Fused against unfused: the epilogue equals add_bias, unary and an add; its backward equals
// unary_backward into zeros and sum_axis over the rows; fz recomputed equals fz given. The shape
// straddles the forward's row tiles and the backward's 64-column blocks.
TEST(CpuKernels, LinearEpilogueIsTheSeparateKernels) {
  const Shape shape{70, 130};
  for (DType dtype : kDtypes)
    for (auto [f, p] : kActivations)
      for (bool with_residual : {false, true}) {
        const std::string what = core::str(name(f), " ", name(dtype),
                                           with_residual ? " residual" : "");
        const Tensor xw = random_tensor(shape, dtype, 61), b = random_tensor({130}, dtype, 62);
        const Tensor r = with_residual ? random_tensor(shape, dtype, 63) : Tensor();
        const Tensor dy = random_tensor(shape, dtype, 64);
        Tensor z = xw.clone(), y = Tensor::empty(shape, dtype);
        cpu().linear_epilogue(b, f, p, r, z, y);

        Tensor z_ref = xw.clone(), y_ref = Tensor::empty(shape, dtype);
        cpu().add_bias(b, z_ref);
        cpu().unary(f, p, z_ref, y_ref);
        if (with_residual) cpu().axpy(1.0, r, y_ref);
        expect_close(values(z), values(z_ref), dtype, {}, (what + " z").c_str());
        expect_close(values(y), values(y_ref), dtype, {}, (what + " y").c_str());

        Tensor fz = Tensor::empty(shape, dtype);
        cpu().unary(f, p, z_ref, fz);
        Tensor dz = Tensor::empty(shape, dtype), dz_recomputed = Tensor::empty(shape, dtype);
        Tensor db = random_tensor({130}, dtype, 65), db_recomputed = db.clone();
        const std::vector<double> db0 = values(db);
        cpu().linear_epilogue_backward(f, p, z, fz, dy, dz, &db);
        cpu().linear_epilogue_backward(f, p, z, Tensor(), dy, dz_recomputed, &db_recomputed);

        Tensor dz_ref = Tensor::zeros(shape, dtype), db_ref = Tensor::from(db0, {130}, dtype);
        cpu().unary_backward(f, p, z_ref, fz, dy, dz_ref);
        cpu().sum_axis(dz_ref, 0, 1.0, true, db_ref);
        expect_close(values(dz), values(dz_ref), dtype, {}, (what + " dz").c_str());
        expect_close(values(dz_recomputed), values(dz_ref), dtype, {},
                     (what + " dz, fz recomputed").c_str());
        std::vector<double> magnitude(130, 0.0);  // Σ |dz| over the column
        const std::vector<double> dzv = values(dz_ref);
        for (std::size_t i = 0; i < dzv.size(); ++i) magnitude[i % 130] += std::abs(dzv[i]);
        expect_close(values(db), values(db_ref), dtype, magnitude, (what + " db").c_str());
        expect_close(values(db_recomputed), values(db_ref), dtype, magnitude,
                     (what + " db, fz recomputed").c_str());
      }
}

// The identity's output may be written over z (the autodiff op does so): y = z + b + r.
TEST(CpuKernels, LinearEpilogueIdentityInPlace) {
  for (DType dtype : kDtypes) {
    const Tensor xw = random_tensor({9, 5}, dtype, 71), b = random_tensor({5}, dtype, 72);
    const Tensor r = random_tensor({9, 5}, dtype, 73);
    Tensor z = xw.clone();
    cpu().linear_epilogue(b, Unary::identity, {}, r, z, z);
    std::vector<double> want = values(xw);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] += b.at(i % 5) + r.at(i);
    expect_close(values(z), want, dtype);
  }
}

// --- reductions ----------------------------------------------------------------------------------

TEST(CpuKernels, SumAxisAndBroadcastAxisEveryAxis) {
  std::uint64_t seed = 200;
  for (DType dtype : kDtypes)
    for (const Shape& s : {Shape{7}, Shape{3, 4, 5}, Shape{2, 3, 4, 5}, Shape{3, 1, 5}})
      for (int axis = 0; axis < s.rank(); ++axis)
        for (bool accumulate : {false, true}) {
          SCOPED_TRACE(testing::Message() << s << " axis " << axis << " acc " << accumulate);
          const std::int64_t outer = s.outer(axis), n = s[axis], inner = s.inner(axis);
          const Tensor x = random_tensor(s, dtype, ++seed);
          Tensor y = random_tensor(s.with(axis, 1), dtype, ++seed);  // keepdim layout
          const std::vector<double> xv = values(x), y0 = values(y);
          const double scale = 0.75;
          cpu().sum_axis(x, axis, scale, accumulate, y);
          std::vector<double> want(y0.size()), mag(y0.size());
          for (std::int64_t o = 0; o < outer; ++o)
            for (std::int64_t k = 0; k < inner; ++k) {
              double acc = 0, abs_acc = 0;
              for (std::int64_t i = 0; i < n; ++i) {
                const double v = xv[static_cast<std::size_t>((o * n + i) * inner + k)];
                acc += v;
                abs_acc += std::abs(v);
              }
              const auto idx = static_cast<std::size_t>(o * inner + k);
              want[idx] = scale * acc + (accumulate ? y0[idx] : 0);
              mag[idx] = scale * abs_acc + std::abs(y0[idx]);
            }
          expect_close(values(y), want, dtype, mag, "sum_axis");

          // broadcast_axis is the adjoint: dx[o, i, k] += scale dy[o, k].
          Tensor dx = random_tensor(s, dtype, ++seed);
          const std::vector<double> dx0 = values(dx), dyv = values(y);
          cpu().broadcast_axis(y, axis, -1.5, dx);
          std::vector<double> want_dx(dx0);
          for (std::int64_t o = 0; o < outer; ++o)
            for (std::int64_t i = 0; i < n; ++i)
              for (std::int64_t k = 0; k < inner; ++k)
                want_dx[static_cast<std::size_t>((o * n + i) * inner + k)] +=
                    -1.5 * dyv[static_cast<std::size_t>(o * inner + k)];
          expect_close(values(dx), want_dx, dtype, {}, "broadcast_axis");
        }
}

TEST(CpuKernels, SumAll) {
  for (DType dtype : kDtypes) {
    const Tensor x = random_tensor({3, 4, 5}, dtype, 300);
    Tensor y = Tensor::full({1}, 2.0, dtype);
    double acc = 0, mag = 0;
    for (double v : values(x)) acc += v, mag += std::abs(v);
    cpu().sum_all(x, 0.5, true, y);
    expect_close(values(y), {2.0 + 0.5 * acc}, dtype, {mag});
    cpu().sum_all(x, 0.5, false, y);
    expect_close(values(y), {0.5 * acc}, dtype, {mag});
  }
}

// --- the softmax family, with -inf (masked) entries ----------------------------------------------

TEST(CpuKernels, SoftmaxAndLogsumexpWithMinusInfinity) {
  const std::vector<double> rows = {0,    -kInf, 1,     -kInf,  // two live entries
                                    -kInf, -kInf, -kInf, 5,     // one live entry
                                    0.5,  -1,    2,     0.25};  // none masked
  for (DType dtype : kDtypes) {
    const Tensor x = Tensor::from(rows, {3, 4}, dtype);
    const std::vector<double> xv = values(x);
    std::vector<double> lse(3), p(12);
    for (int r = 0; r < 3; ++r) {
      double m = -kInf, s = 0;
      for (int j = 0; j < 4; ++j) m = std::max(m, xv[r * 4 + j]);
      for (int j = 0; j < 4; ++j) s += std::exp(xv[r * 4 + j] - m);
      lse[r] = m + std::log(s);
      for (int j = 0; j < 4; ++j) p[r * 4 + j] = std::exp(xv[r * 4 + j] - lse[r]);
    }
    Tensor y = Tensor::empty({3}, dtype), sm = Tensor::empty({3, 4}, dtype),
           lsm = Tensor::empty({3, 4}, dtype);
    cpu().logsumexp(x, y);
    cpu().softmax(x, false, sm);
    cpu().softmax(x, true, lsm);
    expect_close(values(y), lse, dtype, {}, "logsumexp");
    expect_close(values(sm), p, dtype, {}, "softmax");
    std::vector<double> logp(12);
    for (int i = 0; i < 12; ++i) logp[i] = xv[i] - lse[i / 4];
    expect_close(values(lsm), logp, dtype, {}, "log_softmax");
    EXPECT_EQ(sm.at(1), 0.0);
    EXPECT_EQ(lsm.at(1), -kInf);
    EXPECT_EQ(sm.at(7), 1.0);

    // Gradients stay finite; masked entries get no gradient through softmax and logsumexp.
    const Tensor dy_rows = Tensor::from({1, -2, 0.5}, {3}, dtype);
    Tensor dx = Tensor::zeros({3, 4}, dtype);
    cpu().logsumexp_backward(x, y, dy_rows, dx);
    std::vector<double> want(12);
    for (int i = 0; i < 12; ++i) want[i] = values(dy_rows)[i / 4] * p[i];
    expect_close(values(dx), want, dtype, {}, "logsumexp_backward");

    const Tensor dy = random_tensor({3, 4}, dtype, 400);
    const std::vector<double> g = values(dy);
    Tensor dsm = Tensor::zeros({3, 4}, dtype), dlsm = Tensor::zeros({3, 4}, dtype);
    cpu().softmax_backward(sm, dy, false, dsm);
    cpu().softmax_backward(lsm, dy, true, dlsm);
    std::vector<double> want_sm(12), want_lsm(12);
    for (int r = 0; r < 3; ++r) {
      double dot = 0, total = 0;
      for (int j = 0; j < 4; ++j) dot += g[r * 4 + j] * p[r * 4 + j], total += g[r * 4 + j];
      for (int j = 0; j < 4; ++j) {
        want_sm[r * 4 + j] = p[r * 4 + j] * (g[r * 4 + j] - dot);
        want_lsm[r * 4 + j] = g[r * 4 + j] - p[r * 4 + j] * total;
      }
    }
    expect_close(values(dsm), want_sm, dtype, {}, "softmax_backward");
    expect_close(values(dlsm), want_lsm, dtype, {}, "log_softmax_backward");
    EXPECT_EQ(dsm.at(1), 0.0);
  }
  // A fully masked row: logsumexp is -inf, not NaN.
  const Tensor masked = Tensor::full({1, 3}, -kInf, DType::f64);
  Tensor y = Tensor::empty({1}, DType::f64);
  cpu().logsumexp(masked, y);
  EXPECT_EQ(y.item(), -kInf);
}

TEST(CpuKernels, SoftmaxIsStableForLargeInputs) {
  const Tensor x = Tensor::from({1000, 999, -1000, 1e4, -1e4, 0}, {2, 3}, DType::f32);
  Tensor sm = Tensor::empty({2, 3}, DType::f32), y = Tensor::empty({2}, DType::f32);
  cpu().softmax(x, false, sm);
  cpu().logsumexp(x, y);
  for (double v : values(sm)) EXPECT_TRUE(std::isfinite(v));
  EXPECT_NEAR(sm.at(0), 1 / (1 + std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(y.at(0), 1000 + std::log1p(std::exp(-1.0)), 1e-3);
  EXPECT_EQ(y.at(1), 1e4);
}

// --- layer norm ----------------------------------------------------------------------------------

TEST(CpuKernels, LayerNormForwardAndBackward) {
  for (DType dtype : kDtypes)
    for (bool affine : {false, true}) {
      const std::int64_t rows = 5, width = 7;
      const double eps = 1e-5;
      // A large common offset: the two-pass variance must not lose the small spread.
      const Tensor x = random_tensor({rows, width}, dtype, 500, 99, 101);
      const Tensor gamma = affine ? random_tensor({width}, dtype, 501) : Tensor();
      const Tensor beta = affine ? random_tensor({width}, dtype, 502) : Tensor();
      Tensor y = Tensor::empty({rows, width}, dtype), mean = Tensor::empty({rows}, dtype),
             rstd = Tensor::empty({rows}, dtype);
      cpu().layer_norm(x, gamma, beta, eps, y, mean, rstd);
      const std::vector<double> xv = values(x);
      const std::vector<double> gv = affine ? values(gamma) : std::vector<double>(width, 1.0);
      const std::vector<double> bv = affine ? values(beta) : std::vector<double>(width, 0.0);
      std::vector<double> want(xv.size()), xhat(xv.size()), mu(rows), rs(rows);
      for (std::int64_t r = 0; r < rows; ++r) {
        double m = 0, v = 0;
        for (std::int64_t j = 0; j < width; ++j) m += xv[r * width + j];
        m /= width;
        for (std::int64_t j = 0; j < width; ++j) v += std::pow(xv[r * width + j] - m, 2);
        v /= width;
        mu[r] = m;
        rs[r] = 1 / std::sqrt(v + eps);
        for (std::int64_t j = 0; j < width; ++j) {
          xhat[r * width + j] = (xv[r * width + j] - m) * rs[r];
          want[r * width + j] = xhat[r * width + j] * gv[j] + bv[j];
        }
      }
      // float32 loses digits of x - μ to the offset of 100: compare at that precision.
      const std::vector<double> mag(want.size(), dtype == DType::f32 ? 100.0 : 1.0);
      expect_close(values(y), want, dtype, mag, "y");
      expect_close(values(mean), mu, dtype, {}, "mean");
      expect_close(values(rstd), rs, dtype, std::vector<double>(rows, 100.0), "rstd");

      const Tensor dy = random_tensor({rows, width}, dtype, 503);
      const std::vector<double> g = values(dy);
      Tensor dx = Tensor::zeros({rows, width}, dtype);
      Tensor dgamma = Tensor::full({width}, 1.0, dtype), dbeta = Tensor::full({width}, 1.0, dtype);
      cpu().layer_norm_backward(x, gamma, mean, rstd, dy, &dx, affine ? &dgamma : nullptr,
                                affine ? &dbeta : nullptr);
      std::vector<double> want_dx(xv.size()), want_dg(width, 1.0), want_db(width, 1.0);
      for (std::int64_t r = 0; r < rows; ++r) {
        double m1 = 0, m2 = 0;
        for (std::int64_t j = 0; j < width; ++j) {
          const double d = g[r * width + j] * gv[j];
          m1 += d / width;
          m2 += d * xhat[r * width + j] / width;
          want_dg[j] += g[r * width + j] * xhat[r * width + j];
          want_db[j] += g[r * width + j];
        }
        for (std::int64_t j = 0; j < width; ++j)
          want_dx[r * width + j] =
              rs[r] * (g[r * width + j] * gv[j] - m1 - xhat[r * width + j] * m2);
      }
      expect_close(values(dx), want_dx, dtype, std::vector<double>(xv.size(), 100.0), "dx");
      if (affine) {
        expect_close(values(dgamma), want_dg, dtype, std::vector<double>(width, 100.0), "dgamma");
        expect_close(values(dbeta), want_db, dtype, {}, "dbeta");
      } else {
        EXPECT_EQ(values(dgamma), std::vector<double>(width, 1.0));
      }
    }
}

// --- sets, copies, gathers -----------------------------------------------------------------------

TEST(CpuKernels, MeanPoolDenseAndRagged) {
  for (DType dtype : kDtypes) {
    // Dense [B, S, H].
    const Tensor x = random_tensor({2, 3, 5}, dtype, 600);
    Tensor y = Tensor::empty({2, 5}, dtype);
    cpu().mean_pool(x, {}, y);
    const std::vector<double> xv = values(x);
    std::vector<double> want(10, 0);
    for (int b = 0; b < 2; ++b)
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 5; ++j) want[b * 5 + j] += xv[(b * 3 + i) * 5 + j] / 3;
    expect_close(values(y), want, dtype);
    Tensor dx = Tensor::full({2, 3, 5}, 1.0, dtype);
    cpu().mean_pool_backward(y, {}, dx);
    std::vector<double> want_dx(30);
    for (int k = 0; k < 30; ++k) want_dx[k] = 1 + want[(k / 15) * 5 + k % 5] / 3;
    expect_close(values(dx), want_dx, dtype);

    // Ragged: sets of 1, 3 and 2 rows packed into [6, H].
    const std::vector<std::int64_t> lengths{1, 3, 2};
    const Tensor r = random_tensor({6, 4}, dtype, 601);
    Tensor ry = Tensor::empty({3, 4}, dtype);
    cpu().mean_pool(r, lengths, ry);
    const std::vector<double> rv = values(r);
    const int first[] = {0, 1, 4};
    std::vector<double> want_r(12, 0);
    for (int b = 0; b < 3; ++b)
      for (int i = 0; i < lengths[b]; ++i)
        for (int j = 0; j < 4; ++j)
          want_r[b * 4 + j] += rv[(first[b] + i) * 4 + j] / static_cast<double>(lengths[b]);
    expect_close(values(ry), want_r, dtype);
    Tensor rdx = Tensor::full({6, 4}, -1.0, dtype);
    const Tensor dy = random_tensor({3, 4}, dtype, 602);
    cpu().mean_pool_backward(dy, lengths, rdx);
    std::vector<double> want_rdx(24);
    for (int b = 0; b < 3; ++b)
      for (int i = 0; i < lengths[b]; ++i)
        for (int j = 0; j < 4; ++j)
          want_rdx[(first[b] + i) * 4 + j] =
              -1 + values(dy)[b * 4 + j] / static_cast<double>(lengths[b]);
    expect_close(values(rdx), want_rdx, dtype);
  }
}

TEST(CpuKernels, CopyAxisEveryAxis) {
  std::uint64_t seed = 700;
  for (DType dtype : kDtypes)
    for (int axis = 0; axis < 3; ++axis)
      for (bool accumulate : {false, true}) {
        const Shape src_shape{3, 4, 5};
        const Shape dst_shape = src_shape.with(axis, src_shape[axis] + 3);
        const Tensor src = random_tensor(src_shape, dtype, ++seed);
        Tensor dst = random_tensor(dst_shape, dtype, ++seed);
        const std::vector<double> sv = values(src), d0 = values(dst);
        const std::int64_t src_begin = 1, dst_begin = 2, len = src_shape[axis] - 1;
        cpu().copy_axis(src, axis, src_begin, dst, dst_begin, len, accumulate);
        std::vector<double> want(d0);
        const std::int64_t outer = src_shape.outer(axis), inner = src_shape.inner(axis);
        for (std::int64_t o = 0; o < outer; ++o)
          for (std::int64_t i = 0; i < len; ++i)
            for (std::int64_t k = 0; k < inner; ++k) {
              const auto d = static_cast<std::size_t>((o * dst_shape[axis] + dst_begin + i) *
                                                      inner + k);
              const double s =
                  sv[static_cast<std::size_t>((o * src_shape[axis] + src_begin + i) * inner + k)];
              want[d] = accumulate ? want[d] + s : s;
            }
        expect_close(values(dst), want, dtype, {}, "copy_axis");
      }
}

TEST(CpuKernels, GatherAndScatterRowsWithRepeats) {
  for (DType dtype : kDtypes) {
    const Tensor x = random_tensor({4, 2, 3}, dtype, 800);
    const std::vector<std::int64_t> index{3, 0, 3, 3, 1};
    Tensor y = Tensor::empty({5, 2, 3}, dtype);
    cpu().gather_rows(x, index, y);
    const std::vector<double> xv = values(x), yv = values(y);
    for (std::size_t i = 0; i < index.size(); ++i)
      for (std::size_t j = 0; j < 6; ++j)
        EXPECT_EQ(yv[i * 6 + j], xv[static_cast<std::size_t>(index[i]) * 6 + j]);

    const Tensor dy = random_tensor({5, 2, 3}, dtype, 801);
    Tensor dx = Tensor::full({4, 2, 3}, 0.5, dtype);
    cpu().scatter_add_rows(dy, index, dx);
    std::vector<double> want(24, 0.5);
    for (std::size_t i = 0; i < index.size(); ++i)
      for (std::size_t j = 0; j < 6; ++j)
        want[static_cast<std::size_t>(index[i]) * 6 + j] += values(dy)[i * 6 + j];
    expect_close(values(dx), want, dtype);
    for (std::size_t j = 0; j < 6; ++j) EXPECT_EQ(dx.at(2 * 6 + j), 0.5);  // row 2: never read
  }
}

// --- OpenMP: one thread and two agree ----------------------------------------------------------

// Runs `make` with `threads` OpenMP threads and returns the bytes of the tensor it produces.
template <typename F>
std::vector<unsigned char> with_threads(int threads, F&& make) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  const Tensor t = make();
  omp_set_num_threads(saved);
  std::vector<unsigned char> bytes(t.bytes());
  std::memcpy(bytes.data(), t.raw(), t.bytes());
  return bytes;
}

// Large enough (> parallel_grain elements) that every kernel takes its parallel path.
const Shape kBig{300, 257};

TEST(CpuKernelsThreads, SingleWriterKernelsAreIdenticalOnOneAndTwoThreads) {
  for (DType dtype : kDtypes) {
    const Tensor x = random_tensor(kBig, dtype, 900), z = random_tensor(kBig, dtype, 901);
    const Tensor row = random_tensor({kBig[1]}, dtype, 902);
    const Tensor col = random_tensor({kBig[0], 1}, dtype, 903);
    const std::vector<std::int64_t> index{5, 299, 5, 0, 17, 17, 17, 120};
    std::vector<std::int64_t> lengths(30, 10);  // 300 rows in 30 sets
    const Tensor sets = x.reshape({30, 10, kBig[1]});

    struct Kernel {
      const char* name;
      std::function<Tensor()> run;
    };
    const Kernel kernels[] = {
        {"unary", [&] {
           Tensor y = Tensor::empty(kBig, dtype);
           cpu().unary(Unary::gelu, {}, x, y);
           return y;
         }},
        {"unary_backward", [&] {
           Tensor dx = Tensor::zeros(kBig, dtype);
           cpu().unary_backward(Unary::silu, {}, x, z, z, dx);
           return dx;
         }},
        {"binary", [&] {
           Tensor y = Tensor::empty(kBig, dtype);
           cpu().binary(Binary::div, x, z, y);
           return y;
         }},
        {"binary_broadcast", [&] {
           Tensor y = Tensor::empty(kBig, dtype);
           cpu().binary(Binary::mul, x, row, y);
           return y;
         }},
        {"binary_backward", [&] {
           Tensor da = Tensor::zeros(kBig, dtype), db = Tensor::zeros(kBig, dtype);
           cpu().binary_backward(Binary::mul, x, z, z, &da, &db);
           cpu().axpy(1.0, db, da);
           return da;
         }},
        {"binary_backward_broadcast", [&] {
           Tensor da = Tensor::zeros(kBig, dtype), db = Tensor::zeros({kBig[0], 1}, dtype);
           cpu().binary_backward(Binary::sub, x, col, z, &da, &db);
           return db;
         }},
        {"gemm", [&] {
           Tensor c = Tensor::empty({kBig[0], kBig[0]}, dtype);
           cpu().gemm(false, true, 1.0, x, z, 0.0, c);
           return c;
         }},
        {"sum_axis0", [&] {
           Tensor y = Tensor::empty({kBig[1]}, dtype);
           cpu().sum_axis(x, 0, 1.0, false, y);
           return y;
         }},
        {"sum_axis1", [&] {
           Tensor y = Tensor::empty({kBig[0]}, dtype);
           cpu().sum_axis(x, 1, 1.0, false, y);
           return y;
         }},
        {"sum_axis_3d", [&] {
           Tensor y = Tensor::empty({30, kBig[1]}, dtype);
           cpu().sum_axis(sets, 1, 0.1, false, y);
           return y;
         }},
        {"broadcast_axis", [&] {
           Tensor dx = Tensor::zeros(kBig, dtype);
           cpu().broadcast_axis(row, 0, 2.0, dx);
           return dx;
         }},
        {"softmax", [&] {
           Tensor y = Tensor::empty(kBig, dtype);
           cpu().softmax(x, false, y);
           return y;
         }},
        {"log_softmax", [&] {
           Tensor y = Tensor::empty(kBig, dtype);
           cpu().softmax(x, true, y);
           return y;
         }},
        {"softmax_backward", [&] {
           Tensor dx = Tensor::zeros(kBig, dtype);
           cpu().softmax_backward(x, z, false, dx);
           return dx;
         }},
        {"logsumexp", [&] {
           Tensor y = Tensor::empty({kBig[0]}, dtype);
           cpu().logsumexp(x, y);
           return y;
         }},
        {"layer_norm", [&] {
           Tensor y = Tensor::empty(kBig, dtype), m = Tensor::empty({kBig[0]}, dtype),
                  r = Tensor::empty({kBig[0]}, dtype);
           cpu().layer_norm(x, row, row, 1e-5, y, m, r);
           return y;
         }},
        {"layer_norm_backward", [&] {
           Tensor y = Tensor::empty(kBig, dtype), m = Tensor::empty({kBig[0]}, dtype),
                  r = Tensor::empty({kBig[0]}, dtype), dx = Tensor::zeros(kBig, dtype),
                  dg = Tensor::zeros({kBig[1]}, dtype);
           cpu().layer_norm(x, row, row, 1e-5, y, m, r);
           cpu().layer_norm_backward(x, row, m, r, z, &dx, &dg, nullptr);
           return dx;
         }},
        {"mean_pool_dense", [&] {
           Tensor y = Tensor::empty({30, kBig[1]}, dtype);
           cpu().mean_pool(sets, {}, y);
           return y;
         }},
        {"mean_pool_ragged", [&] {
           Tensor y = Tensor::empty({30, kBig[1]}, dtype);
           cpu().mean_pool(x, lengths, y);
           return y;
         }},
        {"copy_axis", [&] {
           Tensor y = Tensor::zeros({kBig[0], 2 * kBig[1]}, dtype);
           cpu().copy_axis(x, 1, 0, y, 100, kBig[1], true);
           return y;
         }},
        {"gather_scatter", [&] {
           Tensor g = Tensor::empty({static_cast<std::int64_t>(index.size()), kBig[1]}, dtype);
           cpu().gather_rows(x, index, g);
           Tensor dx = Tensor::zeros(kBig, dtype);
           cpu().scatter_add_rows(g, index, dx);
           return dx;
         }},
    };
    for (const Kernel& k : kernels)
      EXPECT_EQ(with_threads(1, k.run), with_threads(2, k.run)) << k.name << " " << name(dtype);
  }
}

// A parallel reduction's rounding depends on how the sum is split, so across thread counts only
// closeness is promised; with the same count the result must repeat exactly.
// The fused epilogue's backward sums each bias column over every row in order, whatever the
// thread count.
TEST(CpuKernelsThreads, LinearEpilogueIsIdenticalOnOneAndTwoThreads) {
  for (DType dtype : kDtypes) {
    const Tensor xw = random_tensor(kBig, dtype, 910), b = random_tensor({kBig[1]}, dtype, 911);
    const Tensor dy = random_tensor(kBig, dtype, 912);
    auto forward = [&] {
      Tensor z = xw.clone(), y = Tensor::empty(kBig, dtype);
      cpu().linear_epilogue(b, Unary::tanh, {}, Tensor(), z, y);
      return y;
    };
    auto bias_gradient = [&] {
      Tensor z = xw.clone(), y = Tensor::empty(kBig, dtype), dz = Tensor::empty(kBig, dtype);
      cpu().linear_epilogue(b, Unary::tanh, {}, Tensor(), z, y);
      Tensor db = Tensor::zeros({kBig[1]}, dtype);
      cpu().linear_epilogue_backward(Unary::tanh, {}, z, y, dy, dz, &db);
      return db;
    };
    EXPECT_EQ(with_threads(1, forward), with_threads(2, forward)) << name(dtype);
    EXPECT_EQ(with_threads(1, bias_gradient), with_threads(2, bias_gradient)) << name(dtype);
  }
}

TEST(CpuKernelsThreads, SumAllRepeatsExactlyWithTheSameThreadCount) {
  const int saved = omp_get_max_threads();
  for (DType dtype : kDtypes) {
    const Tensor x = random_tensor(kBig, dtype, 950);
    auto run = [&] {
      Tensor y = Tensor::empty({1}, dtype);
      cpu().sum_all(x, 1.0, false, y);
      return y;
    };
    for (int threads : {1, 2}) EXPECT_EQ(with_threads(threads, run), with_threads(threads, run));
    omp_set_num_threads(1);
    const double one = run().item();
    omp_set_num_threads(2);
    const double two = run().item();
    omp_set_num_threads(saved);
    double mag = 0;
    for (double v : values(x)) mag += std::abs(v);
    // float32 sums in double and rounds once at the end: the two may straddle a float step.
    EXPECT_NEAR(one, two, (dtype == DType::f32 ? 1e-7 : 1e-12) * mag) << name(dtype);
  }
}

}  // namespace
}  // namespace asbi::core
