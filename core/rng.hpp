#pragma once
// Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random
// numbers: as easy as 1, 2, 3", SC 2011).
//
// Why counter-based: a draw is a pure function of (seed, stream, counter), so the numbers a
// simulation sees do not depend on how work is split across threads or devices, and any
// slice of a random sequence can be recomputed without replaying what came before it.
//
// Usage story. A training run owns one seed. Each consumer that needs its own independent
// sequence takes its own stream id (e.g. stream 0 = prior draws, stream 1 = simulator noise,
// stream 2 = minibatch shuffles). Within a stream, positions are counters:
//
//   // Parallel, reproducible: element i of `theta` depends only on (seed, 0, 1000 + i), so the
//   // result is the same with 1 thread or 64. The next fill on stream 0 starts at 1000 + n.
//   asbi::core::fill_normal(seed, /*stream=*/0, /*offset=*/1000, std::span<float>(theta));
//
//   // Sequential draws (rejection samplers, shuffles) use an Rng object; give each parallel
//   // task its own stream (or its own counter range via set_counter) so tasks never share
//   // counters:
//   asbi::core::Rng rng(seed, /*stream=*/2 + task_id);
//   std::vector<std::int64_t> order = rng.permutation(n_rows);
//
// The Philox key is the seed's two 32-bit halves; the 128-bit Philox counter is
// (counter lo, counter hi, stream lo, stream hi). One Philox call ("block") yields four 32-bit
// words. Streams therefore never overlap, whatever their counters.
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/host_device.hpp"

namespace asbi::core {

// The raw bijection. Only built-in types inside, so the same code can be compiled by nvcc for
// device use and checked at compile time (constexpr) against the Random123 known answers.
struct Philox4x32 {
  static constexpr std::uint32_t kMul0 = 0xD2511F53u;
  static constexpr std::uint32_t kMul1 = 0xCD9E8D57u;
  static constexpr std::uint32_t kWeyl0 = 0x9E3779B9u;  // golden ratio
  static constexpr std::uint32_t kWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1
  static constexpr int kRounds = 10;

  ASBI_HOST_DEVICE static constexpr void round10(const std::uint32_t (&ctr)[4],
                                                 const std::uint32_t (&key)[2],
                                                 std::uint32_t (&out)[4]) {
    std::uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    std::uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < kRounds; ++r) {
      if (r > 0) {  // the key schedule bumps before every round but the first
        k0 += kWeyl0;
        k1 += kWeyl1;
      }
      const std::uint64_t p0 = static_cast<std::uint64_t>(kMul0) * c0;
      const std::uint64_t p1 = static_cast<std::uint64_t>(kMul1) * c2;
      const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32);
      const std::uint32_t lo0 = static_cast<std::uint32_t>(p0);
      const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32);
      const std::uint32_t lo1 = static_cast<std::uint32_t>(p1);
      c0 = hi1 ^ c1 ^ k0;
      c1 = lo1;
      c2 = hi0 ^ c3 ^ k1;
      c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
  }

  // Host convenience form of the same function.
  static constexpr std::array<std::uint32_t, 4> round10(std::array<std::uint32_t, 4> ctr,
                                                        std::array<std::uint32_t, 2> key) {
    const std::uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    const std::uint32_t k[2] = {key[0], key[1]};
    std::uint32_t o[4] = {};
    round10(c, k, o);
    return {o[0], o[1], o[2], o[3]};
  }
};

// Block `counter` of (seed, stream): the four words every other draw in this file is built on.
ASBI_HOST_DEVICE constexpr void philox_block(std::uint64_t seed, std::uint64_t stream,
                                             std::uint64_t counter, std::uint32_t (&out)[4]) {
  const std::uint32_t ctr[4] = {
      static_cast<std::uint32_t>(counter), static_cast<std::uint32_t>(counter >> 32),
      static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)};
  const std::uint32_t key[2] = {static_cast<std::uint32_t>(seed),
                                static_cast<std::uint32_t>(seed >> 32)};
  Philox4x32::round10(ctr, key, out);
}

constexpr std::array<std::uint32_t, 4> philox_block(std::uint64_t seed, std::uint64_t stream,
                                                    std::uint64_t counter) {
  std::uint32_t o[4] = {};
  philox_block(seed, stream, counter, o);
  return {o[0], o[1], o[2], o[3]};
}

// Uniforms on the open interval (0, 1), so log(u) and 1/u are always finite. The top 24 (53)
// bits give k * 2^-24 (k * 2^-53), which is exact and at most 1 - 2^-24 (1 - 2^-53); the one
// value k == 0 is moved to half a step. (The "midpoint" form k * 2^-24 + 2^-25 would need 25
// significant bits near 1 and rounds to exactly 1.0f for the largest k.)
ASBI_HOST_DEVICE constexpr float open_unit_float(std::uint32_t x) {
  const std::uint32_t k = x >> 8;
  return k == 0 ? 0x1p-25f : static_cast<float>(k) * 0x1p-24f;
}

// `a` supplies the high 32 of the 53 bits, `b` the low 21.
ASBI_HOST_DEVICE constexpr double open_unit_double(std::uint32_t a, std::uint32_t b) {
  const std::uint64_t k = ((static_cast<std::uint64_t>(a) << 32) | b) >> 11;
  return k == 0 ? 0x1p-54 : static_cast<double>(k) * 0x1p-53;
}

// The Box–Muller transform of two uniforms into two independent standard normals,
//   z0 = √(-2 log u0) cos(2π u1),   z1 = √(-2 log u0) sin(2π u1),
// evaluated in T (float or double). One definition for Rng::normal, the CPU fills and the CUDA
// kernels, so that devices differ only by their log, sin and cos.
template <typename T>
ASBI_HOST_DEVICE inline void box_muller(T u0, T u1, T& z0, T& z1) {
  using std::cos, std::log, std::sin, std::sqrt;
  constexpr T two_pi = T(6.283185307179586476925286766559);
  const T r = sqrt(T(-2) * log(u0));
  const T t = two_pi * u1;
  z0 = r * cos(t);
  z1 = r * sin(t);
}

// Sequential generator for one (seed, stream). It reads the stream as a sequence of 32-bit
// words: word j is lane j % 4 of block j / 4. uniform_float() takes one word, uniform() two,
// normal() four per pair of normals (the second is cached), so that from a block-aligned
// position (construction, set_counter, skip) these draws equal the corresponding bulk fills:
// uniform_float() == fill_uniform<float> at offset 4 * counter, uniform() == fill_uniform<double>
// and normal() == fill_normal<double> at offset 2 * counter (normals to the last bit only
// without -ffast-math). Not thread-safe; give each thread its own stream.
class Rng {
 public:
  explicit Rng(std::uint64_t seed, std::uint64_t stream = 0, std::uint64_t counter = 0) noexcept
      : seed_(seed), stream_(stream), counter_(counter) {}

  std::uint64_t seed() const noexcept { return seed_; }
  std::uint64_t stream() const noexcept { return stream_; }
  // The next block not yet read. Words left over from a partly used block are not counted, so
  // set_counter(counter()) drops them and guarantees a fresh block.
  std::uint64_t counter() const noexcept { return counter_; }
  // Positions at the start of block `counter`, dropping buffered words and any cached normal.
  void set_counter(std::uint64_t counter) noexcept {
    counter_ = counter;
    lane_ = 4;
    has_cached_normal_ = false;
  }
  void skip(std::uint64_t n_blocks) noexcept { set_counter(counter_ + n_blocks); }

  std::uint32_t next_u32() noexcept {
    if (lane_ == 4) {
      philox_block(seed_, stream_, counter_++, buf_);
      lane_ = 0;
    }
    return buf_[lane_++];
  }
  // The next four words: exactly block counter() when block-aligned.
  std::array<std::uint32_t, 4> next_u32x4() noexcept {
    if (lane_ == 4) return philox_block(seed_, stream_, counter_++);
    const std::uint32_t a = next_u32(), b = next_u32(), c = next_u32(), d = next_u32();
    return {a, b, c, d};
  }
  std::uint64_t next_u64() noexcept {
    const std::uint64_t hi = next_u32();
    return (hi << 32) | next_u32();
  }

  double uniform() noexcept {  // in (0, 1), 53 bits
    const std::uint32_t a = next_u32();
    return open_unit_double(a, next_u32());
  }
  float uniform_float() noexcept { return open_unit_float(next_u32()); }  // in (0, 1), 24 bits
  double normal() noexcept;  // standard normal, Box–Muller
  // Gamma(shape, scale 1) by Marsaglia & Tsang (2000); shape < 1 via
  // Gamma(shape + 1) * U^(1/shape). Consumes a data-dependent number of words (rejection).
  // Throws unless shape is finite and > 0.
  double gamma(double shape);
  // Index i with probability probs[i] / sum(probs). Throws on an empty span, a negative,
  // NaN or infinite entry, or an all-zero span. Zero-probability indices are never returned.
  std::size_t categorical(std::span<const double> probs);
  // Uniformly random permutation of 0..n-1 (Fisher–Yates). Throws if n < 0.
  std::vector<std::int64_t> permutation(std::int64_t n);
  // Unbiased integer in [0, n) (Lemire's method for n <= 2^32, masked rejection above).
  // Throws if n <= 0.
  std::int64_t uniform_int(std::int64_t n);

 private:
  std::uint64_t seed_;
  std::uint64_t stream_;
  std::uint64_t counter_;
  std::uint32_t buf_[4] = {};
  int lane_ = 4;  // 4: buffer empty
  bool has_cached_normal_ = false;
  double cached_normal_ = 0.0;
};

// Bulk fills. Element i is a pure function of (seed, stream, offset + i), so results are
// bit-identical whatever the OpenMP thread count, and a fill split into pieces with matching
// offsets equals the single fill. Uniforms are also identical across builds and machines;
// normals go through libm's log/sin/cos, so another libm or -ffast-math may change their last
// bits (never within one build).
//
// Counters consumed, with e = offset + i the element's position:
//   fill_uniform(float)   element e = open_unit_float(lane e % 4 of block e / 4)
//   fill_uniform(double)  element e = open_unit_double(lanes 2(e % 2), 2(e % 2) + 1 of block e / 2)
//   fill_normal(float)    block e / 4: lanes (0, 1) -> Box–Muller pair for e % 4 in {0, 1},
//                         lanes (2, 3) -> pair for e % 4 in {2, 3}
//   fill_normal(double)   block e / 2: u0 = lanes (0, 1), u1 = lanes (2, 3) -> pair e % 2
// So a fill of n elements at `offset` reads blocks [offset / k, ceil((offset + n) / k)), with
// k = kFloatsPerBlock or kDoublesPerBlock. Successive fills of the same kind on one stream are
// disjoint when each starts where the previous ended (offset += n). Fills of different kinds,
// or a uniform and a normal fill, at overlapping blocks reuse the same words: give them
// different streams. Throws if offset + n overflows 64 bits.
inline constexpr std::uint64_t kFloatsPerBlock = 4;
inline constexpr std::uint64_t kDoublesPerBlock = 2;

void fill_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                  std::span<float> out);
void fill_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                  std::span<double> out);
void fill_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                 std::span<float> out);
void fill_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                 std::span<double> out);

// The same fills into a tensor on any device (Backend::random_uniform / random_normal): on the
// CPU exactly the span fills above, on a GPU the same uniforms bit for bit and the same normals
// to a few ulp. So a sampler draws on the device its tensors live on, with the numbers it would
// draw on the CPU.
class Tensor;
void fill_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, Tensor& out);
void fill_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, Tensor& out);
// Fills from an Rng's position: at offset rng.counter() · (elements per block of out's dtype),
// then moves rng past every block read, so successive draws never share counters.
void fill_uniform(Rng& rng, Tensor& out);
void fill_normal(Rng& rng, Tensor& out);

}  // namespace asbi::core
