// The fused linear epilogue, y = f(z + b) + r after the GEMM, and its backward through f and the
// bias. Forward and backward each make one pass over their tensors where the separate add_bias,
// unary, add and unary_backward + sum_axis kernels make three; the per-element functions are the
// same ones (Eigen's vectorised float32 transcendentals, core/scalar_math.hpp otherwise).
#include <algorithm>
#include <type_traits>

#include "core/cpu/cpu_backend.hpp"
#include "core/cpu/vectorised.hpp"
#include "core/scalar_math.hpp"

namespace asbi::core::cpu {

using scalar::with_unary;

namespace {

// Rows per tile of the forward: the bias add, f and the residual add see a tile while it is in
// L1/L2 (4096 floats = 16 KiB).
constexpr std::int64_t tile_elements = 4096;

// Bias columns per task of the backward, as in sum_axis: each task sums its columns over every
// row in order, so the bias gradient does not depend on the thread count.
constexpr std::int64_t bias_block = 64;

// out = f(in) over len elements (out may be in).
template <typename T, Unary Op>
void apply(UnaryParams p, const T* in, T* out, std::int64_t len) {
  if constexpr (Op == Unary::identity) {
    if (out != in) std::copy(in, in + len, out);
    return;
  } else {
    if constexpr (std::is_same_v<T, float>) {
      if (has_vectorised_forward(Op)) {
        unary_vectorised(Op, p, ConstArrayMap(in, len), ArrayMap(out, len));
        return;
      }
    }
    for (std::int64_t i = 0; i < len; ++i) out[i] = scalar::unary_value<T>(Op, p, in[i]);
  }
}

// dz = dy ⊙ f'(z) over len elements; fz = f(z), or null to recompute it where f' reads it.
template <typename T, Unary Op>
void derivative(UnaryParams p, const T* z, const T* fz, const T* dy, T* dz, std::int64_t len) {
  if constexpr (std::is_same_v<T, float>) {
    if (has_vectorised_backward(Op)) {
      unary_backward_vectorised<false>(Op, ConstArrayMap(z, len), ConstArrayMap(dy, len),
                                       ArrayMap(dz, len));
      return;
    }
  }
  if (fz) {
#pragma omp simd
    for (std::int64_t i = 0; i < len; ++i)
      dz[i] = dy[i] * scalar::unary_derivative<T>(Op, p, z[i], fz[i]);
  } else {
#pragma omp simd
    for (std::int64_t i = 0; i < len; ++i)
      dz[i] = dy[i] * scalar::unary_derivative<T>(Op, p, z[i], scalar::unary_value<T>(Op, p, z[i]));
  }
}

}  // namespace

void CpuBackend::linear_epilogue(const Tensor& bias, Unary f, UnaryParams p, const Tensor& residual,
                                 Tensor& z, Tensor& y) {
  const std::int64_t n = z.numel();
  if (n == 0) return;
  const std::int64_t width = z.shape().last(), rows = n / width;
  const std::int64_t tile_rows = std::max<std::int64_t>(1, tile_elements / width);
  with_dtype(z.dtype(), [&]<typename T>() {
    T* pz = z.data<T>();
    T* py = y.data<T>();
    const T* b = bias.defined() ? bias.data<T>() : nullptr;
    const T* r = residual.defined() ? residual.data<T>() : nullptr;
    with_unary(f, [&]<Unary Op>() {
      parallel_for(rows, n, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t r0 = begin; r0 < end; r0 += tile_rows) {
          const std::int64_t r1 = std::min(end, r0 + tile_rows), first = r0 * width;
          const std::int64_t len = (r1 - r0) * width;
          if (b)
            for (std::int64_t row = r0; row < r1; ++row) {
              T* zr = pz + row * width;
#pragma omp simd
              for (std::int64_t j = 0; j < width; ++j) zr[j] += b[j];
            }
          apply<T, Op>(p, pz + first, py + first, len);
          if (r)
#pragma omp simd
            for (std::int64_t i = first; i < first + len; ++i) py[i] += r[i];
        }
      });
    });
  });
}

void CpuBackend::linear_epilogue_backward(Unary f, UnaryParams p, const Tensor& z, const Tensor& fz,
                                          const Tensor& dy, Tensor& dz, Tensor* dbias) {
  const std::int64_t n = z.numel();
  if (n == 0) return;
  const std::int64_t width = z.shape().last(), rows = n / width;
  with_dtype(z.dtype(), [&]<typename T>() {
    const T* pz = z.data<T>();
    const T* pfz = fz.defined() ? fz.data<T>() : nullptr;
    const T* g = dy.data<T>();
    T* gz = dz.data<T>();
    with_unary(f, [&]<Unary Op>() {
      auto segment = [&](std::int64_t at, std::int64_t len) {
        derivative<T, Op>(p, pz + at, pfz ? pfz + at : nullptr, g + at, gz + at, len);
      };
      if (!dbias) {
        parallel_for(n, n,
                     [&](std::int64_t begin, std::int64_t end) { segment(begin, end - begin); });
        return;
      }
      T* db = dbias->data<T>();
      const std::int64_t blocks = (width + bias_block - 1) / bias_block;
      parallel_for(blocks, n, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t task = begin; task < end; ++task) {
          const std::int64_t k0 = task * bias_block, cols = std::min(bias_block, width - k0);
          double acc[bias_block] = {};
          for (std::int64_t row = 0; row < rows; ++row) {
            const std::int64_t at = row * width + k0;
            segment(at, cols);
            for (std::int64_t k = 0; k < cols; ++k) acc[k] += gz[at + k];
          }
          for (std::int64_t k = 0; k < cols; ++k) db[k0 + k] += static_cast<T>(acc[k]);
        }
      });
    });
  });
}

}  // namespace asbi::core::cpu
