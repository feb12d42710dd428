#include "core/rng.hpp"

#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace asbi::core {
namespace {

// Below this many blocks a parallel region costs more than it saves.
constexpr std::uint64_t kParallelMinBlocks = 2048;

template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream msg;
  (msg << ... << parts);
  throw ValueError(msg.str());
}

// Reads the exponent bits rather than calling std::isfinite, which -ffast-math folds to true:
// input validation must not depend on how the project is compiled.
inline bool finite(double x) {
  constexpr std::uint64_t kExp = 0x7ff0000000000000ULL;
  return (std::bit_cast<std::uint64_t>(x) & kExp) != kExp;
}

// kBatch consecutive blocks at once, stored structure-of-arrays so that each round is a plain
// loop over independent counters, which compilers turn into SIMD multiplies. It must equal
// kBatch calls of philox_block (Fill.EveryElementMatchesItsBlock checks this).
constexpr std::uint64_t kBatch = 16;

inline void philox_batch(std::uint64_t seed, std::uint64_t stream, std::uint64_t b0,
                         std::uint32_t (&w)[4][kBatch]) {
  std::uint32_t c0[kBatch], c1[kBatch], c2[kBatch], c3[kBatch];
  for (std::uint64_t i = 0; i < kBatch; ++i) {
    const std::uint64_t b = b0 + i;
    c0[i] = static_cast<std::uint32_t>(b);
    c1[i] = static_cast<std::uint32_t>(b >> 32);
    c2[i] = static_cast<std::uint32_t>(stream);
    c3[i] = static_cast<std::uint32_t>(stream >> 32);
  }
  std::uint32_t k0 = static_cast<std::uint32_t>(seed);
  std::uint32_t k1 = static_cast<std::uint32_t>(seed >> 32);
  for (int r = 0; r < Philox4x32::kRounds; ++r) {
    if (r > 0) {
      k0 += Philox4x32::kWeyl0;
      k1 += Philox4x32::kWeyl1;
    }
    for (std::uint64_t i = 0; i < kBatch; ++i) {
      const std::uint64_t p0 = static_cast<std::uint64_t>(Philox4x32::kMul0) * c0[i];
      const std::uint64_t p1 = static_cast<std::uint64_t>(Philox4x32::kMul1) * c2[i];
      const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1[i] ^ k0;
      const std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3[i] ^ k1;
      c1[i] = static_cast<std::uint32_t>(p1);
      c3[i] = static_cast<std::uint32_t>(p0);
      c0[i] = n0;
      c2[i] = n2;
    }
  }
  for (std::uint64_t i = 0; i < kBatch; ++i) {
    w[0][i] = c0[i];
    w[1][i] = c1[i];
    w[2][i] = c2[i];
    w[3][i] = c3[i];
  }
}

// The generators: all K outputs of each of kBatch consecutive blocks starting at b0. Every fill
// element, edge or interior, comes out of the same batch code, so neither thread count nor
// where a fill is split can change a value, even under flags (-ffast-math) that let the
// compiler vectorise log/sin/cos differently from scalar calls.
struct UniformF {
  static constexpr std::uint64_t K = kFloatsPerBlock;
  void operator()(std::uint64_t seed, std::uint64_t stream, std::uint64_t b0, float* v) const {
    std::uint32_t w[4][kBatch];
    philox_batch(seed, stream, b0, w);
    for (std::uint64_t i = 0; i < kBatch; ++i) {
      for (std::uint64_t l = 0; l < 4; ++l) v[4 * i + l] = open_unit_float(w[l][i]);
    }
  }
};
struct UniformD {
  static constexpr std::uint64_t K = kDoublesPerBlock;
  void operator()(std::uint64_t seed, std::uint64_t stream, std::uint64_t b0, double* v) const {
    std::uint32_t w[4][kBatch];
    philox_batch(seed, stream, b0, w);
    for (std::uint64_t i = 0; i < kBatch; ++i) {
      v[2 * i] = open_unit_double(w[0][i], w[1][i]);
      v[2 * i + 1] = open_unit_double(w[2][i], w[3][i]);
    }
  }
};
struct NormalF {
  static constexpr std::uint64_t K = kFloatsPerBlock;
  void operator()(std::uint64_t seed, std::uint64_t stream, std::uint64_t b0, float* v) const {
    std::uint32_t w[4][kBatch];
    philox_batch(seed, stream, b0, w);
    for (std::uint64_t i = 0; i < kBatch; ++i) {
      box_muller(open_unit_float(w[0][i]), open_unit_float(w[1][i]), v[4 * i], v[4 * i + 1]);
      box_muller(open_unit_float(w[2][i]), open_unit_float(w[3][i]), v[4 * i + 2], v[4 * i + 3]);
    }
  }
};
struct NormalD {
  static constexpr std::uint64_t K = kDoublesPerBlock;
  void operator()(std::uint64_t seed, std::uint64_t stream, std::uint64_t b0, double* v) const {
    std::uint32_t w[4][kBatch];
    philox_batch(seed, stream, b0, w);
    for (std::uint64_t i = 0; i < kBatch; ++i) {
      box_muller(open_unit_double(w[0][i], w[1][i]), open_unit_double(w[2][i], w[3][i]), v[2 * i],
                 v[2 * i + 1]);
    }
  }
};

template <typename Gen, typename T>
void fill_blocks(const char* what, std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                 std::span<T> out) {
  constexpr std::uint64_t K = Gen::K;
  constexpr std::uint64_t kChunk = K * kBatch;  // elements per batch
  const Gen gen{};
  const std::uint64_t n = out.size();
  if (n == 0) return;
  if (n > std::numeric_limits<std::uint64_t>::max() - offset) {
    fail(what, ": offset + size must fit in 64 bits, got offset ", offset, " and size ", n);
  }
  const std::uint64_t first = offset;
  const std::uint64_t end = offset + n;
  T* const dst = out.data();

  // Batches start at the block holding `first`; each batch's first element e0 is < end. Only
  // the first and last batches can stick out of [first, end): those go through a scratch
  // buffer. Differences rather than sums keep every bound free of 64-bit overflow.
  const std::uint64_t b_first = first / K;
  const std::uint64_t n_blocks = (end - 1) / K - b_first + 1;
  const auto n_batches = static_cast<std::int64_t>((n_blocks + kBatch - 1) / kBatch);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n_blocks >= kParallelMinBlocks)
#endif
  for (std::int64_t j = 0; j < n_batches; ++j) {
    const std::uint64_t b0 = b_first + static_cast<std::uint64_t>(j) * kBatch;
    const std::uint64_t e0 = b0 * K;
    if (e0 >= first && end - e0 >= kChunk) {
      gen(seed, stream, b0, dst + (e0 - first));
    } else {
      T v[kChunk];
      gen(seed, stream, b0, v);
      const std::uint64_t lo = e0 < first ? first - e0 : 0;
      const std::uint64_t hi = std::min(kChunk, end - e0);
      for (std::uint64_t l = lo; l < hi; ++l) dst[e0 + l - first] = v[l];
    }
  }
}

}  // namespace

double Rng::normal() noexcept {
  if (has_cached_normal_) {
    has_cached_normal_ = false;
    return cached_normal_;
  }
  const double u0 = uniform();
  const double u1 = uniform();
  double z0 = 0.0;
  box_muller(u0, u1, z0, cached_normal_);
  has_cached_normal_ = true;
  return z0;
}

double Rng::gamma(double shape) {
  if (!finite(shape) || !(shape > 0.0)) {
    fail("gamma: shape must be finite and > 0, got ", shape);
  }
  if (shape < 1.0) {
    // Marsaglia–Tsang needs shape >= 1; Gamma(a) = Gamma(a + 1) * U^(1/a). Done in log space
    // because U^(1/a) underflows for small a long before the product does.
    const double g = gamma(shape + 1.0);
    const double log_u = std::log(uniform());
    return std::exp(std::log(g) + log_u / shape);
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    const double x = normal();
    double v = 1.0 + c * x;
    if (v <= 0.0) continue;
    v = v * v * v;
    const double u = uniform();
    const double x2 = x * x;
    if (u < 1.0 - 0.0331 * x2 * x2) return d * v;  // cheap squeeze, accepts ~98%
    if (std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return d * v;
  }
}

std::size_t Rng::categorical(std::span<const double> probs) {
  if (probs.empty()) fail("categorical: probs must be non-empty, got size 0");
  double total = 0.0;
  for (std::size_t i = 0; i < probs.size(); ++i) {
    const double p = probs[i];
    if (!finite(p) || p < 0.0) {
      fail("categorical: probs[", i, "] must be finite and >= 0, got ", p);
    }
    total += p;
  }
  if (!finite(total) || !(total > 0.0)) {
    fail("categorical: probs must have a finite positive sum, got ", total);
  }
  const double target = uniform() * total;
  double cum = 0.0;
  std::size_t last_positive = 0;
  for (std::size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] > 0.0) last_positive = i;
    cum += probs[i];
    // cum only grows at positive entries, so a zero-probability index can never be first.
    if (target < cum) return i;
  }
  // Rounding can leave the running sum a hair below total * u.
  return last_positive;
}

std::int64_t Rng::uniform_int(std::int64_t n) {
  if (n <= 0) fail("uniform_int: n must be > 0, got ", n);
  const auto un = static_cast<std::uint64_t>(n);
  if (un <= (std::uint64_t{1} << 32)) {
    // Lemire (2019): the high word of x * n is uniform once the low word is below the
    // threshold 2^32 mod n; that rejection removes the modulo bias.
    std::uint64_t m = static_cast<std::uint64_t>(next_u32()) * un;
    auto low = static_cast<std::uint32_t>(m);
    if (low < un) {
      const auto threshold = static_cast<std::uint32_t>((std::uint64_t{1} << 32) % un);
      while (low < threshold) {
        m = static_cast<std::uint64_t>(next_u32()) * un;
        low = static_cast<std::uint32_t>(m);
      }
    }
    return static_cast<std::int64_t>(m >> 32);
  }
  // Rare wide case: draw only as many bits as n - 1 needs, reject the excess (< 1/2 per try).
  std::uint64_t mask = un - 1;
  mask |= mask >> 1;
  mask |= mask >> 2;
  mask |= mask >> 4;
  mask |= mask >> 8;
  mask |= mask >> 16;
  mask |= mask >> 32;
  for (;;) {
    const std::uint64_t x = next_u64() & mask;
    if (x < un) return static_cast<std::int64_t>(x);
  }
}

std::vector<std::int64_t> Rng::permutation(std::int64_t n) {
  if (n < 0) fail("permutation: n must be >= 0, got ", n);
  std::vector<std::int64_t> p(static_cast<std::size_t>(n));
  std::iota(p.begin(), p.end(), std::int64_t{0});
  for (std::int64_t i = n - 1; i > 0; --i) {
    const std::int64_t j = uniform_int(i + 1);
    std::swap(p[static_cast<std::size_t>(i)], p[static_cast<std::size_t>(j)]);
  }
  return p;
}

void fill_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                  std::span<float> out) {
  fill_blocks<UniformF>("fill_uniform", seed, stream, offset, out);
}
void fill_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                  std::span<double> out) {
  fill_blocks<UniformD>("fill_uniform", seed, stream, offset, out);
}
void fill_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                 std::span<float> out) {
  fill_blocks<NormalF>("fill_normal", seed, stream, offset, out);
}
void fill_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                 std::span<double> out) {
  fill_blocks<NormalD>("fill_normal", seed, stream, offset, out);
}

void fill_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, Tensor& out) {
  backend(out.device()).random_uniform(seed, stream, offset, out);
}
void fill_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, Tensor& out) {
  backend(out.device()).random_normal(seed, stream, offset, out);
}

namespace {

// Elements of `dtype` per Philox block in the fills' counter layout.
std::uint64_t elements_per_block(DType dtype) {
  return dtype == DType::f64 ? kDoublesPerBlock : kFloatsPerBlock;
}

template <typename Fill>
void fill_from(Rng& rng, Tensor& out, Fill&& fill) {
  const std::uint64_t k = elements_per_block(out.dtype());
  const auto n = static_cast<std::uint64_t>(out.numel());
  const std::uint64_t block = rng.counter();
  fill(block * k);
  rng.set_counter(block + (n + k - 1) / k);
}

}  // namespace

void fill_uniform(Rng& rng, Tensor& out) {
  fill_from(rng, out, [&](std::uint64_t offset) {
    fill_uniform(rng.seed(), rng.stream(), offset, out);
  });
}
void fill_normal(Rng& rng, Tensor& out) {
  fill_from(rng, out, [&](std::uint64_t offset) {
    fill_normal(rng.seed(), rng.stream(), offset, out);
  });
}

}  // namespace asbi::core
