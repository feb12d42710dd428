#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "core/tensor.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace asbi::core {
namespace {

using U4 = std::array<std::uint32_t, 4>;
using K2 = std::array<std::uint32_t, 2>;

// ---------------------------------------------------------------------------------------------
// Known answers: Random123 kat_vectors, "philox4x32 10" lines (counter, key -> output).

static_assert(Philox4x32::round10(U4{0, 0, 0, 0}, K2{0, 0}) ==
                  U4{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
              "Philox4x32-10 must be usable in constant expressions");

TEST(Philox4x32, KnownAnswerZeros) {
  EXPECT_EQ(Philox4x32::round10(U4{0, 0, 0, 0}, K2{0, 0}),
            (U4{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
}

TEST(Philox4x32, KnownAnswerAllOnes) {
  EXPECT_EQ(Philox4x32::round10(U4{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                                K2{0xffffffff, 0xffffffff}),
            (U4{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
}

TEST(Philox4x32, KnownAnswerPiDigits) {
  EXPECT_EQ(Philox4x32::round10(U4{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
                                K2{0xa4093822, 0x299f31d0}),
            (U4{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(Philox4x32, RawArrayFormMatchesArrayForm) {
  const std::uint32_t ctr[4] = {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344};
  const std::uint32_t key[2] = {0xa4093822, 0x299f31d0};
  std::uint32_t out[4] = {};
  Philox4x32::round10(ctr, key, out);
  EXPECT_EQ((U4{out[0], out[1], out[2], out[3]}),
            (U4{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(Philox4x32, CounterAndKeyLayout) {
  const std::uint64_t seed = 0x0123456789abcdefULL;
  const std::uint64_t stream = 0xfedcba9876543210ULL;
  const std::uint64_t counter = 0x1122334455667788ULL;
  const U4 expected = Philox4x32::round10(U4{0x55667788, 0x11223344, 0x76543210, 0xfedcba98},
                                          K2{0x89abcdef, 0x01234567});
  EXPECT_EQ(philox_block(seed, stream, counter), expected);
  Rng rng(seed, stream, counter);
  EXPECT_EQ(rng.next_u32x4(), expected);
  EXPECT_EQ(rng.counter(), counter + 1);
}

// ---------------------------------------------------------------------------------------------
// Conversions

TEST(Conversion, FloatIsOpenAtExtremes) {
  const float lo = open_unit_float(0u);
  const float hi = open_unit_float(0xffffffffu);
  EXPECT_GT(lo, 0.0f);
  EXPECT_LT(hi, 1.0f);
  EXPECT_EQ(hi, 1.0f - 0x1p-24f);
  EXPECT_TRUE(std::isfinite(std::log(lo)));
  EXPECT_TRUE(std::isfinite(std::log(1.0f - hi)));
  // The smallest nonzero k and the k == 0 substitute are distinct and ordered.
  EXPECT_LT(lo, open_unit_float(0x100u));
  EXPECT_EQ(open_unit_float(0x80000000u), 0.5f);
}

TEST(Conversion, DoubleIsOpenAtExtremes) {
  const double lo = open_unit_double(0u, 0u);
  const double hi = open_unit_double(0xffffffffu, 0xffffffffu);
  EXPECT_GT(lo, 0.0);
  EXPECT_LT(hi, 1.0);
  EXPECT_EQ(hi, 1.0 - 0x1p-53);
  EXPECT_TRUE(std::isfinite(std::log(lo)));
  EXPECT_TRUE(std::isfinite(std::log(1.0 - hi)));
  EXPECT_LT(lo, open_unit_double(0u, 0x800u));  // k = 1
  EXPECT_EQ(open_unit_double(0x80000000u, 0u), 0.5);
  // All 53 bits are used: the low word's top 21 bits matter, its low 11 do not.
  EXPECT_NE(open_unit_double(0x12345678u, 0x00000800u), open_unit_double(0x12345678u, 0u));
  EXPECT_EQ(open_unit_double(0x12345678u, 0x000007ffu), open_unit_double(0x12345678u, 0u));
}

// ---------------------------------------------------------------------------------------------
// Rng positioning and stream separation

TEST(Rng, WordStreamReadsBlocksInOrder) {
  Rng rng(42, 7);
  for (std::uint64_t b = 0; b < 3; ++b) {
    const U4 block = philox_block(42, 7, b);
    for (int l = 0; l < 4; ++l) EXPECT_EQ(rng.next_u32(), block[static_cast<std::size_t>(l)]);
  }
  // Unaligned next_u32x4 continues the word stream across the block boundary.
  rng.next_u32();
  const U4 b3 = philox_block(42, 7, 3), b4 = philox_block(42, 7, 4);
  EXPECT_EQ(rng.next_u32x4(), (U4{b3[1], b3[2], b3[3], b4[0]}));
}

TEST(Rng, SkipAndSetCounter) {
  Rng a(9, 1);
  a.next_u32x4();
  a.next_u32x4();
  const U4 third = a.next_u32x4();

  Rng b(9, 1);
  b.skip(2);
  EXPECT_EQ(b.counter(), 2u);
  EXPECT_EQ(b.next_u32x4(), third);

  Rng c(9, 1);
  c.uniform_float();  // partly used block is dropped by set_counter
  EXPECT_EQ(c.counter(), 1u);
  c.set_counter(2);
  EXPECT_EQ(c.next_u32x4(), third);
  EXPECT_EQ(c.seed(), 9u);
  EXPECT_EQ(c.stream(), 1u);
}

TEST(Rng, SetCounterDropsCachedNormal) {
  Rng a(3, 0);
  a.normal();  // caches the second of the pair
  a.set_counter(0);
  Rng b(3, 0);
  EXPECT_EQ(a.normal(), b.normal());
}

TEST(Rng, StreamsAndSeedsDiffer) {
  auto words = [](std::uint64_t seed, std::uint64_t stream) {
    Rng rng(seed, stream);
    std::vector<std::uint32_t> w(16);
    for (auto& x : w) x = rng.next_u32();
    return w;
  };
  const auto base = words(1, 0);
  EXPECT_EQ(base, words(1, 0));
  EXPECT_NE(base, words(1, 1));
  EXPECT_NE(base, words(2, 0));
  EXPECT_NE(base, words(std::uint64_t{1} << 32, 0));  // high half of the seed is used
  EXPECT_NE(base, words(1, std::uint64_t{1} << 32));  // high half of the stream is used
  // No word in common at all between two streams (a shifted copy would show up here).
  auto other = words(1, 1);
  std::sort(other.begin(), other.end());
  for (auto x : base) EXPECT_FALSE(std::binary_search(other.begin(), other.end(), x));
}

TEST(Rng, MatchesBulkFillsFromAlignedPosition) {
  const std::uint64_t seed = 77, stream = 5, c0 = 10;
  std::vector<float> ff(12);
  std::vector<double> fd(6), fn(6);
  fill_uniform(seed, stream, 4 * c0, std::span<float>(ff));
  fill_uniform(seed, stream, 2 * c0, std::span<double>(fd));
  fill_normal(seed, stream, 2 * c0, std::span<double>(fn));
  Rng r1(seed, stream, c0), r2(seed, stream, c0), r3(seed, stream, c0);
  for (float x : ff) EXPECT_EQ(r1.uniform_float(), x);
  for (double x : fd) EXPECT_EQ(r2.uniform(), x);
  for (double x : fn) EXPECT_DOUBLE_EQ(r3.normal(), x);
}

// ---------------------------------------------------------------------------------------------
// Bulk fills: independent of thread count and of how a fill is split

template <typename T, typename Fill>
void expect_fill_reproducible(Fill fill) {
  const std::uint64_t seed = 0xdeadbeef12345678ULL, stream = 3, offset = 5;  // unaligned start
  const std::size_t n = 100003;  // unaligned end, enough blocks to go parallel
  std::vector<T> ref(n);
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
#endif
  fill(seed, stream, offset, std::span<T>(ref));
  for (int threads : {2, 4}) {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    std::vector<T> got(n);
    fill(seed, stream, offset, std::span<T>(got));
    EXPECT_EQ(std::memcmp(ref.data(), got.data(), n * sizeof(T)), 0) << threads << " threads";
  }
#ifdef _OPENMP
  omp_set_num_threads(saved);
#endif
  // Split at several cut points, including inside a block and on a block boundary.
  for (std::size_t cut : {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{37},
                          std::size_t{40}, std::size_t{50000}, n}) {
    std::vector<T> got(n);
    std::span<T> all(got);
    fill(seed, stream, offset, all.first(cut));
    fill(seed, stream, offset + cut, all.subspan(cut));
    EXPECT_EQ(std::memcmp(ref.data(), got.data(), n * sizeof(T)), 0) << "cut at " << cut;
  }
  // A tiny fill inside one block, and one straddling two blocks, agree with the big one.
  std::vector<T> small(2);
  fill(seed, stream, offset + 1, std::span<T>(small));
  EXPECT_EQ(std::memcmp(small.data(), ref.data() + 1, 2 * sizeof(T)), 0);
  fill(seed, stream, offset + 2, std::span<T>(small));
  EXPECT_EQ(std::memcmp(small.data(), ref.data() + 2, 2 * sizeof(T)), 0);
}

TEST(Fill, UniformFloatReproducible) {
  expect_fill_reproducible<float>([](auto... a) { fill_uniform(a...); });
}
TEST(Fill, UniformDoubleReproducible) {
  expect_fill_reproducible<double>([](auto... a) { fill_uniform(a...); });
}
TEST(Fill, NormalFloatReproducible) {
  expect_fill_reproducible<float>([](auto... a) { fill_normal(a...); });
}
TEST(Fill, NormalDoubleReproducible) {
  expect_fill_reproducible<double>([](auto... a) { fill_normal(a...); });
}

TEST(Fill, DocumentedCounterLayout) {
  const std::uint64_t seed = 11, stream = 2;
  std::vector<float> f(3);
  fill_uniform(seed, stream, 6, std::span<float>(f));  // elements 6, 7, 8
  const U4 b1 = philox_block(seed, stream, 1), b2 = philox_block(seed, stream, 2);
  EXPECT_EQ(f[0], open_unit_float(b1[2]));
  EXPECT_EQ(f[1], open_unit_float(b1[3]));
  EXPECT_EQ(f[2], open_unit_float(b2[0]));
  std::vector<double> d(2);
  fill_uniform(seed, stream, 3, std::span<double>(d));  // elements 3, 4
  EXPECT_EQ(d[0], open_unit_double(b1[2], b1[3]));
  EXPECT_EQ(d[1], open_unit_double(b2[0], b2[1]));
}

TEST(Fill, EveryElementMatchesItsBlock) {
  // Long enough for the batched SIMD path, the per-block remainder and both edges.
  const std::uint64_t seed = 0x9e3779b97f4a7c15ULL, stream = 0xffffffff00000001ULL;
  const std::uint64_t offset = (std::uint64_t{1} << 34) - 3;  // crosses the counter's 2^32 word
  std::vector<float> f(1001);
  std::vector<double> d(1001);
  fill_uniform(seed, stream, offset, std::span<float>(f));
  fill_uniform(seed, stream, offset, std::span<double>(d));
  for (std::size_t i = 0; i < f.size(); ++i) {
    const std::uint64_t e = offset + i;
    const U4 bf = philox_block(seed, stream, e / 4);
    ASSERT_EQ(f[i], open_unit_float(bf[e % 4])) << "float element " << i;
    const U4 bd = philox_block(seed, stream, e / 2);
    ASSERT_EQ(d[i], open_unit_double(bd[2 * (e % 2)], bd[2 * (e % 2) + 1]))
        << "double element " << i;
  }
}

TEST(Fill, EverySmallSizeAndOffsetStaysInBoundsAndMatches) {
  // Sizes around the batch width (16 blocks = 64 floats / 32 doubles) at every alignment;
  // guard elements on both sides catch writes outside the span.
  const std::uint64_t seed = 5, stream = 6;
  const float gf = -7.0f;
  const double gd = -7.0;
  for (std::uint64_t offset = 0; offset < 9; ++offset) {
    for (std::size_t n = 0; n <= 140; ++n) {
      std::vector<float> f(n + 2, gf);
      std::vector<double> d(n + 2, gd);
      fill_uniform(seed, stream, offset, std::span<float>(f).subspan(1, n));
      fill_uniform(seed, stream, offset, std::span<double>(d).subspan(1, n));
      ASSERT_EQ(f.front(), gf);
      ASSERT_EQ(f.back(), gf) << "offset " << offset << " n " << n;
      ASSERT_EQ(d.front(), gd);
      ASSERT_EQ(d.back(), gd) << "offset " << offset << " n " << n;
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t e = offset + i;
        ASSERT_EQ(f[i + 1], open_unit_float(philox_block(seed, stream, e / 4)[e % 4]));
        const U4 bd = philox_block(seed, stream, e / 2);
        ASSERT_EQ(d[i + 1], open_unit_double(bd[2 * (e % 2)], bd[2 * (e % 2) + 1]));
      }
    }
  }
}

TEST(Fill, EmptySpanIsFine) {
  std::vector<float> none;
  EXPECT_NO_THROW(
      fill_uniform(1, 1, std::numeric_limits<std::uint64_t>::max(), std::span<float>(none)));
}

// ---------------------------------------------------------------------------------------------
// Tensor fills: the span fills through the device seam (CPU here; tests/cuda compares the GPU).

// The bits of element i of a CPU tensor of T.
template <typename T>
T element(const Tensor& t, std::size_t i) {
  return t.data<T>()[i];
}

template <typename T>
void expect_tensor_fill_is_span_fill(bool normal) {
  const std::uint64_t seed = 0x5eedULL, stream = 3;
  for (std::uint64_t offset : {0ULL, 1ULL, 5ULL, 7ULL, (1ULL << 32) - 3}) {
    for (std::int64_t n : {1, 3, 63, 65, 1001}) {
      Tensor t = Tensor::empty({n}, dtype_of<T>());
      std::vector<T> want(static_cast<std::size_t>(n));
      if (normal) {
        fill_normal(seed, stream, offset, t);
        fill_normal(seed, stream, offset, std::span<T>(want));
      } else {
        fill_uniform(seed, stream, offset, t);
        fill_uniform(seed, stream, offset, std::span<T>(want));
      }
      for (std::size_t i = 0; i < want.size(); ++i)
        ASSERT_EQ(std::memcmp(&want[i], t.data<T>() + i, sizeof(T)), 0)
            << (normal ? "normal" : "uniform") << " offset " << offset << " n " << n
            << " element " << i;
    }
  }
}

TEST(TensorFill, UniformIsTheSpanFillBitForBit) {
  expect_tensor_fill_is_span_fill<float>(false);
  expect_tensor_fill_is_span_fill<double>(false);
}

TEST(TensorFill, NormalIsTheSpanFillBitForBit) {
  expect_tensor_fill_is_span_fill<float>(true);
  expect_tensor_fill_is_span_fill<double>(true);
}

TEST(TensorFill, FromAnRngStartsAtItsBlockAndMovesPastWhatItRead) {
  Rng rng(7, 2, 10);
  rng.next_u32();  // a partly used block is skipped
  Tensor f = Tensor::empty({3, 3}, DType::f32);
  fill_normal(rng, f);
  EXPECT_EQ(rng.counter(), 11u + 3u);  // ceil(9 / 4) blocks from block 11
  std::vector<float> want(9);
  fill_normal(7, 2, 11 * kFloatsPerBlock, std::span<float>(want));
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(element<float>(f, i), want[i]);
  Tensor d = Tensor::empty({5}, DType::f64);
  fill_uniform(rng, d);
  EXPECT_EQ(rng.counter(), 14u + 3u);  // ceil(5 / 2) blocks
  std::vector<double> wd(5);
  fill_uniform(7, 2, 14 * kDoublesPerBlock, std::span<double>(wd));
  for (std::size_t i = 0; i < wd.size(); ++i) EXPECT_EQ(element<double>(d, i), wd[i]);
}

// The mask keeps exactly the elements whose float32 uniform is ≥ p (compared in the mask's dtype)
// and scales them by keep_scale.
TEST(TensorFill, DropoutMaskThresholdsTheFloatUniforms) {
  Backend& cpu = backend(Device::cpu);
  const std::uint64_t seed = 12, stream = 4, offset = 6;
  const std::int64_t n = 2500;  // more than the float64 path's stack chunk
  const double p = 0.3, scale = 1 / 0.7;
  std::vector<float> u(static_cast<std::size_t>(n));
  fill_uniform(seed, stream, offset, std::span<float>(u));
  Tensor mf = Tensor::empty({n}, DType::f32), md = Tensor::empty({n}, DType::f64);
  cpu.dropout_mask(seed, stream, offset, p, scale, mf);
  cpu.dropout_mask(seed, stream, offset, p, scale, md);
  std::int64_t kept = 0;
  for (std::size_t i = 0; i < u.size(); ++i) {
    const bool keep = u[i] >= static_cast<float>(p);
    kept += keep;
    ASSERT_EQ(element<float>(mf, i), keep ? static_cast<float>(scale) : 0.0f) << i;
    ASSERT_EQ(element<double>(md, i), double(u[i]) >= p ? scale : 0.0) << i;
  }
  EXPECT_NEAR(double(kept) / double(n), 1 - p, 0.05);
}

// ---------------------------------------------------------------------------------------------
// Statistics. Fixed seeds make these deterministic; tolerances are 5 standard errors so a
// correct generator passes by a wide margin while a wrong moment or a wrong lane fails.

struct Moments {
  double mean = 0, var = 0, m4 = 0;  // m4: fourth central moment
};

template <typename T>
Moments moments(const std::vector<T>& x) {
  Moments m;
  const double n = static_cast<double>(x.size());
  for (T v : x) m.mean += static_cast<double>(v);
  m.mean /= n;
  for (T v : x) {
    const double d = static_cast<double>(v) - m.mean;
    m.var += d * d;
    m.m4 += d * d * d * d;
  }
  m.var /= n - 1;
  m.m4 /= n;
  return m;
}

// Kolmogorov–Smirnov distance between the sample and a continuous CDF.
template <typename T, typename Cdf>
double ks_statistic(std::vector<T> x, Cdf cdf) {
  std::sort(x.begin(), x.end());
  const double n = static_cast<double>(x.size());
  double d = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double f = cdf(static_cast<double>(x[i]));
    d = std::max({d, static_cast<double>(i + 1) / n - f, f - static_cast<double>(i) / n});
  }
  return d;
}

double normal_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

constexpr std::size_t kN = 100000;
const double kKsCritical1pct = 1.628 / std::sqrt(static_cast<double>(kN));  // asymptotic

template <typename T>
void expect_uniform_sample(const std::vector<T>& x) {
  const double n = static_cast<double>(x.size());
  for (T v : x) {
    ASSERT_GT(v, T(0));
    ASSERT_LT(v, T(1));
  }
  const Moments m = moments(x);
  EXPECT_NEAR(m.mean, 0.5, 5 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(m.var, 1.0 / 12, 5 * std::sqrt((1.0 / 80 - 1.0 / 144) / n));
  EXPECT_LT(ks_statistic(x, [](double u) { return u; }), kKsCritical1pct);
}

template <typename T>
void expect_normal_sample(const std::vector<T>& x) {
  const double n = static_cast<double>(x.size());
  const Moments m = moments(x);
  EXPECT_NEAR(m.mean, 0.0, 5 / std::sqrt(n));
  EXPECT_NEAR(m.var, 1.0, 5 * std::sqrt(2.0 / n));
  EXPECT_NEAR(m.m4, 3.0, 5 * std::sqrt(96.0 / n));  // Var(z^4) = 105 - 9
  EXPECT_LT(ks_statistic(x, normal_cdf), kKsCritical1pct);
}

TEST(Stats, UniformFloatFill) {
  std::vector<float> x(kN);
  fill_uniform(101, 0, 0, std::span<float>(x));
  expect_uniform_sample(x);
}
TEST(Stats, UniformDoubleFill) {
  std::vector<double> x(kN);
  fill_uniform(102, 0, 0, std::span<double>(x));
  expect_uniform_sample(x);
}
TEST(Stats, UniformRng) {
  Rng rng(103);
  std::vector<double> x(kN);
  for (auto& v : x) v = rng.uniform();
  expect_uniform_sample(x);
  std::vector<float> y(kN);
  for (auto& v : y) v = rng.uniform_float();
  expect_uniform_sample(y);
}
TEST(Stats, NormalFloatFill) {
  std::vector<float> x(kN);
  fill_normal(104, 0, 0, std::span<float>(x));
  expect_normal_sample(x);
}
TEST(Stats, NormalDoubleFill) {
  std::vector<double> x(kN);
  fill_normal(105, 0, 0, std::span<double>(x));
  expect_normal_sample(x);
}
TEST(Stats, NormalRng) {
  Rng rng(106);
  std::vector<double> x(kN);
  for (auto& v : x) v = rng.normal();
  expect_normal_sample(x);
}
TEST(Stats, NormalPairsAreUncorrelated) {
  // Both members of a Box–Muller pair are used; a sin/cos mix-up would correlate them.
  std::vector<double> x(kN);
  fill_normal(107, 0, 0, std::span<double>(x));
  double c = 0;
  for (std::size_t i = 0; i + 1 < kN; i += 2) c += x[i] * x[i + 1];
  EXPECT_NEAR(c / (kN / 2), 0.0, 5 / std::sqrt(kN / 2.0));
}

TEST(Stats, GammaMeanAndVariance) {
  for (double shape : {0.5, 1.0, 3.7}) {
    Rng rng(200, static_cast<std::uint64_t>(shape * 10));
    std::vector<double> x(kN);
    for (auto& v : x) {
      v = rng.gamma(shape);
      ASSERT_GE(v, 0.0) << "shape " << shape;
    }
    const Moments m = moments(x);
    const double n = static_cast<double>(kN);
    // Gamma(a, 1): mean a, variance a, excess kurtosis 6/a, so Var(s^2) ~ a^2 (2 + 6/a) / n.
    EXPECT_NEAR(m.mean, shape, 5 * std::sqrt(shape / n)) << "shape " << shape;
    EXPECT_NEAR(m.var, shape, 5 * shape * std::sqrt((2 + 6 / shape) / n)) << "shape " << shape;
  }
}

TEST(Stats, GammaDistributionShapesWithClosedFormCdf) {
  // Gamma(1) is Exp(1); Gamma(1/2) is chi-square(1) / 2, CDF erf(sqrt(x)). These reach the
  // Marsaglia–Tsang acceptance steps and the shape < 1 boost beyond what two moments see.
  Rng rng(202);
  std::vector<double> x(kN);
  for (auto& v : x) v = rng.gamma(1.0);
  EXPECT_LT(ks_statistic(x, [](double g) { return -std::expm1(-g); }), kKsCritical1pct);
  for (auto& v : x) v = rng.gamma(0.5);
  EXPECT_LT(ks_statistic(x, [](double g) { return std::erf(std::sqrt(g)); }), kKsCritical1pct);
}

TEST(Stats, GammaTinyShapeIsFiniteAndNonNegative) {
  Rng rng(201);
  for (int i = 0; i < 1000; ++i) {
    const double g = rng.gamma(1e-3);
    ASSERT_TRUE(std::isfinite(g));
    ASSERT_GE(g, 0.0);
  }
}

TEST(Stats, CategoricalFrequencies) {
  const std::vector<double> w = {1.0, 0.0, 2.0, 3.0, 4.0};  // unnormalised, one zero
  Rng rng(300);
  std::vector<std::int64_t> counts(w.size(), 0);
  for (std::size_t i = 0; i < kN; ++i) ++counts[rng.categorical(w)];
  EXPECT_EQ(counts[1], 0);
  double chi2 = 0;
  for (std::size_t k = 0; k < w.size(); ++k) {
    if (w[k] == 0) continue;
    const double expected = static_cast<double>(kN) * w[k] / 10.0;
    const double d = static_cast<double>(counts[k]) - expected;
    chi2 += d * d / expected;
  }
  EXPECT_LT(chi2, 16.27);  // chi-square, 3 dof, 0.1% critical value
}

TEST(Stats, CategoricalSingleAndTrailingZeros) {
  Rng rng(301);
  const std::vector<double> one = {0.0, 0.0, 5.0, 0.0, 0.0};
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(rng.categorical(one), 2u);
  const std::vector<double> tiny = {1e-300, 0.0};
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(rng.categorical(tiny), 0u);
}

TEST(Stats, PermutationIsPermutation) {
  Rng rng(400);
  EXPECT_TRUE(rng.permutation(0).empty());
  EXPECT_EQ(rng.permutation(1), std::vector<std::int64_t>{0});
  auto p = rng.permutation(1000);
  std::vector<std::int64_t> identity(1000);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(p, identity);
  std::sort(p.begin(), p.end());
  EXPECT_EQ(p, identity);
}

TEST(Stats, PermutationPositionsUniform) {
  constexpr std::size_t n = 5;
  constexpr int reps = 20000;
  Rng rng(401);
  std::vector<std::vector<int>> counts(n, std::vector<int>(n, 0));  // [position][value]
  for (int r = 0; r < reps; ++r) {
    const auto p = rng.permutation(static_cast<std::int64_t>(n));
    for (std::size_t pos = 0; pos < n; ++pos) ++counts[pos][static_cast<std::size_t>(p[pos])];
  }
  const double expected = static_cast<double>(reps) / n;
  for (std::size_t pos = 0; pos < n; ++pos) {
    double chi2 = 0;
    for (std::size_t v = 0; v < n; ++v) {
      const double d = counts[pos][v] - expected;
      chi2 += d * d / expected;
    }
    EXPECT_LT(chi2, 18.47) << "position " << pos;  // 4 dof, 0.1% critical value
  }
}

TEST(Stats, UniformIntUnbiasedSmall) {
  Rng rng(500);
  std::vector<std::int64_t> counts(3, 0);
  const std::int64_t reps = 300000;
  for (std::int64_t i = 0; i < reps; ++i) {
    const std::int64_t k = rng.uniform_int(3);
    ASSERT_GE(k, 0);
    ASSERT_LT(k, 3);
    ++counts[static_cast<std::size_t>(k)];
  }
  double chi2 = 0;
  for (auto c : counts) {
    const double d = static_cast<double>(c) - reps / 3.0;
    chi2 += d * d / (reps / 3.0);
  }
  EXPECT_LT(chi2, 13.82);  // 2 dof, 0.1% critical value
  EXPECT_EQ(rng.uniform_int(1), 0);
}

TEST(Stats, UniformIntUnbiasedWhereModuloWouldNotBe) {
  // n = 3 * 2^30: a plain x % n would put half the mass in the first third.
  const std::int64_t n = 3LL << 30;
  Rng rng(501);
  std::vector<std::int64_t> thirds(3, 0);
  for (std::size_t i = 0; i < kN; ++i) {
    const std::int64_t k = rng.uniform_int(n);
    ASSERT_GE(k, 0);
    ASSERT_LT(k, n);
    ++thirds[static_cast<std::size_t>(k >> 30)];
  }
  double chi2 = 0;
  for (auto c : thirds) {
    const double d = static_cast<double>(c) - kN / 3.0;
    chi2 += d * d / (kN / 3.0);
  }
  EXPECT_LT(chi2, 13.82);
}

TEST(Stats, UniformIntWideRange) {
  const std::int64_t n = (std::int64_t{1} << 40) + 12345;  // above 2^32: the masked path
  Rng rng(502);
  double sum = 0;
  for (std::size_t i = 0; i < kN; ++i) {
    const std::int64_t k = rng.uniform_int(n);
    ASSERT_GE(k, 0);
    ASSERT_LT(k, n);
    sum += static_cast<double>(k) / static_cast<double>(n);
  }
  EXPECT_NEAR(sum / kN, 0.5, 5 * std::sqrt(1.0 / 12 / kN));
  const std::int64_t big = std::numeric_limits<std::int64_t>::max();
  for (int i = 0; i < 100; ++i) ASSERT_LT(rng.uniform_int(big), big);
}

// ---------------------------------------------------------------------------------------------
// Bad inputs name the parameter and the value found

template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const ValueError& e) {
    return e.what();
  }
  return "<no exception>";
}

TEST(BadInput, Gamma) {
  Rng rng(1);
  const std::string neg = error_of([&] { rng.gamma(-1.0); });
  EXPECT_NE(neg.find("shape"), std::string::npos) << neg;
  EXPECT_NE(neg.find("-1"), std::string::npos) << neg;
  EXPECT_NE(error_of([&] { rng.gamma(0.0); }).find("shape"), std::string::npos);
  EXPECT_NE(error_of([&] { rng.gamma(std::nan("")); }).find("nan"), std::string::npos);
  EXPECT_NE(error_of([&] { rng.gamma(std::numeric_limits<double>::infinity()); }).find("inf"),
            std::string::npos);
}

TEST(BadInput, Categorical) {
  Rng rng(1);
  const std::vector<double> empty;
  EXPECT_NE(error_of([&] { rng.categorical(empty); }).find("non-empty"), std::string::npos);
  const std::vector<double> neg = {0.5, -0.25, 1.0};
  const std::string m = error_of([&] { rng.categorical(neg); });
  EXPECT_NE(m.find("probs[1]"), std::string::npos) << m;
  EXPECT_NE(m.find("-0.25"), std::string::npos) << m;
  const std::vector<double> nan = {0.5, std::nan("")};
  EXPECT_NE(error_of([&] { rng.categorical(nan); }).find("probs[1]"), std::string::npos);
  const std::vector<double> zeros = {0.0, 0.0};
  EXPECT_NE(error_of([&] { rng.categorical(zeros); }).find("sum"), std::string::npos);
  const double huge = std::numeric_limits<double>::max();
  const std::vector<double> overflow = {huge, huge};
  EXPECT_NE(error_of([&] { rng.categorical(overflow); }).find("sum"), std::string::npos);
}

TEST(BadInput, UniformIntAndPermutation) {
  Rng rng(1);
  const std::string zero = error_of([&] { rng.uniform_int(0); });
  EXPECT_NE(zero.find("n must be > 0, got 0"), std::string::npos) << zero;
  EXPECT_NE(error_of([&] { rng.uniform_int(-5); }).find("-5"), std::string::npos);
  const std::string perm = error_of([&] { rng.permutation(-1); });
  EXPECT_NE(perm.find("permutation: n must be >= 0, got -1"), std::string::npos) << perm;
}

TEST(BadInput, FillOffsetOverflow) {
  std::vector<double> x(8);
  const std::string m = error_of([&] {
    fill_normal(1, 1, std::numeric_limits<std::uint64_t>::max() - 3, std::span<double>(x));
  });
  EXPECT_NE(m.find("offset"), std::string::npos) << m;
}

}  // namespace
}  // namespace asbi::core
