// Random fills on the device: the Philox4x32-10 blocks of core/rng.hpp turned into uniforms and
// normals in exactly the counter layout the CPU fills use ("Counters consumed" there), so a
// tensor drawn here holds the CPU's uniforms bit for bit and its normals to a few ulp.
//
// One thread per Philox block: it computes the block's four words once and writes the K elements
// the block feeds (K = 4 float32 or 2 float64) that fall inside [offset, offset + n). Only the
// first and last blocks of a fill can stick out of that range.
#include "core/rng.hpp"
#include "cuda/backend_impl.cuh"

namespace asbi::cuda {

using core::Tensor;

namespace {

// Element e of a fill (e counted from the stream's origin, not from `offset`) out of the four
// words of its Philox block; `lane` is e % K with K the elements one block feeds.
template <typename T>
struct UniformElement {
  static constexpr int K = sizeof(T) == 4 ? 4 : 2;  // kFloatsPerBlock, kDoublesPerBlock
  __device__ T operator()(const std::uint32_t (&w)[4], int lane) const {
    if constexpr (K == 4)
      return core::open_unit_float(w[lane]);
    else
      return core::open_unit_double(w[2 * lane], w[2 * lane + 1]);
  }
};

template <typename T>
struct NormalElement {
  static constexpr int K = sizeof(T) == 4 ? 4 : 2;
  __device__ T operator()(const std::uint32_t (&w)[4], int lane) const {
    T z0, z1;
    if constexpr (K == 4) {  // lanes (0, 1) → the pair for e % 4 ∈ {0, 1}, (2, 3) → {2, 3}
      const int pair = lane & 2;
      core::box_muller(core::open_unit_float(w[pair]), core::open_unit_float(w[pair + 1]), z0, z1);
      return (lane & 1) ? z1 : z0;
    } else {  // u0 = lanes (0, 1), u1 = lanes (2, 3) → the pair for e % 2 ∈ {0, 1}
      core::box_muller(core::open_unit_double(w[0], w[1]), core::open_unit_double(w[2], w[3]), z0,
                       z1);
      return lane ? z1 : z0;
    }
  }
};

// Float32 uniforms u whatever T, then u ≥ p ? keep_scale : 0 compared in T.
template <typename T>
struct DropoutElement {
  static constexpr int K = 4;
  T drop_probability, keep_scale;
  __device__ T operator()(const std::uint32_t (&w)[4], int lane) const {
    return T(core::open_unit_float(w[lane])) >= drop_probability ? keep_scale : T(0);
  }
};

// Writes n elements, reads nothing: one Philox block (10 rounds of two 32×32→64-bit multiplies)
// per thread, grid-stride over the ⌈n / K⌉ + 1 blocks at most that the fill touches, 256 threads.
template <typename T, typename Element>
__global__ void random_fill_kernel(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                                   Element element, T* y, std::int64_t n) {
  constexpr int K = Element::K;
  const std::uint64_t first_block = offset / K;
  const std::uint64_t end = offset + static_cast<std::uint64_t>(n);
  const auto blocks = static_cast<std::int64_t>((end - 1) / K - first_block + 1);
  ASBI_GRID_LOOP(j, blocks) {
    const std::uint64_t block = first_block + static_cast<std::uint64_t>(j);
    std::uint32_t w[4];
    core::philox_block(seed, stream, block, w);
    for (int lane = 0; lane < K; ++lane) {
      const std::uint64_t e = block * K + static_cast<std::uint64_t>(lane);
      if (e >= offset && e < end) y[e - offset] = element(w, lane);
    }
  }
}

// The number of Philox blocks a fill of n elements at `offset` reads; throws where the CPU fill
// does (offset + n past 2⁶⁴).
std::int64_t blocks_of_fill(const char* op, std::uint64_t offset, std::int64_t n, int per) {
  const auto un = static_cast<std::uint64_t>(n);
  if (un > ~std::uint64_t{0} - offset)
    throw core::ValueError(core::str(
        "cuda ", op, ": offset + size must fit in 64 bits, got offset ", offset, " and size ", n));
  return static_cast<std::int64_t>((offset + un - 1) / per - offset / per + 1);
}

// Launches random_fill_kernel over y with the element rule make_rule(T{}) for y's dtype T.
template <typename MakeRule>
void launch_fill(const char* op, std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                 Tensor& y, MakeRule&& make_rule) {
  expect_device(op, {&y});
  const std::int64_t n = y.numel();
  if (n == 0) return;
  with_dtype(y.dtype(), [&]<typename T>() {
    auto rule = make_rule(T{});
    const std::int64_t blocks = blocks_of_fill(op, offset, n, decltype(rule)::K);
    random_fill_kernel<T>
        <<<grid_for(blocks), block_size>>>(seed, stream, offset, rule, y.data<T>(), n);
  });
  ASBI_CUDA_CHECK_LAUNCH("random_fill_kernel");
}

}  // namespace

void CudaBackend::random_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                                 Tensor& y) {
  launch_fill("random_uniform", seed, stream, offset, y,
              []<typename T>(T) { return UniformElement<T>{}; });
}

void CudaBackend::random_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                                Tensor& y) {
  launch_fill("random_normal", seed, stream, offset, y,
              []<typename T>(T) { return NormalElement<T>{}; });
}

void CudaBackend::dropout_mask(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                               double drop_probability, double keep_scale, Tensor& y) {
  launch_fill("dropout_mask", seed, stream, offset, y, [&]<typename T>(T) {
    return DropoutElement<T>{static_cast<T>(drop_probability), static_cast<T>(keep_scale)};
  });
}

}  // namespace asbi::cuda
