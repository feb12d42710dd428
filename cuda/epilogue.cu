// The fused linear epilogue: y = f(z + b) + r after cuBLAS has written z = x Wᵀ, and its backward
// dz = dy ⊙ f'(z) fused with the bias gradient db = Σ_rows dz. The per-element functions are
// core/scalar_math.hpp's, as in the unary kernels.
//
// The bias gradient is a column sum over many rows. Without float atomics it runs in two passes
// whose shape depends only on [rows, H]: pass 1 gives each (row chunk, 32-column tile) to one
// block, which writes dz and one partial sum per column; pass 2 folds each column's partials in
// chunk order. So db repeats bit for bit from run to run.
#include "core/scalar_math.hpp"
#include "cuda/backend_impl.cuh"

namespace asbi::cuda {

using core::Tensor;
using core::Unary;
using core::UnaryParams;

namespace {

using core::scalar::with_unary;

// Pass 1's block: 32 columns (one warp, so each row segment is one coalesced access) × 8 row
// lanes.
constexpr int tile_columns = 32;
constexpr int row_lanes = 8;
// Rows per chunk of pass 1, and the most chunks (partials per column) it makes.
constexpr std::int64_t chunk_rows_min = 64;
constexpr std::int64_t max_chunks = 256;

// dz = dy f'(z), with f(z) read from fz or recomputed when fz is null.
template <typename T, Unary Op>
__device__ inline T epilogue_derivative(UnaryParams p, T z, const T* fz, std::int64_t i, T dy) {
  const T y = fz ? fz[i] : core::scalar::unary_value<T>(Op, p, z);
  return dy * core::scalar::unary_derivative<T>(Op, p, z, y);
}

// Reads z, b (cached), r; writes z, y: 3–4 · sizeof(T) bytes per element. Grid-stride over the
// rows · H elements, 256 threads.
template <typename T, Unary Op>
__global__ void linear_epilogue_kernel(const T* bias, UnaryParams p, const T* residual, T* z, T* y,
                                       std::int64_t width, std::int64_t n) {
  ASBI_GRID_LOOP(i, n) {
    const T zi = bias ? z[i] + bias[i % width] : z[i];
    z[i] = zi;
    const T fi = core::scalar::unary_value<T>(Op, p, zi);
    y[i] = residual ? fi + residual[i] : fi;
  }
}

// No bias gradient wanted: reads z, dy (and fz), writes dz; grid-stride, 256 threads.
template <typename T, Unary Op>
__global__ void epilogue_derivative_kernel(UnaryParams p, const T* z, const T* fz, const T* dy,
                                           T* dz, std::int64_t n) {
  ASBI_GRID_LOOP(i, n) dz[i] = epilogue_derivative<T, Op>(p, z[i], fz, i, dy[i]);
}

// Pass 1: reads z, dy (and fz), writes dz and chunks · H double partials. Grid (⌈H / 32⌉ column
// tiles, chunks), blocks of 32 × 8 threads: thread (c, l) walks rows l, l + 8, … of its chunk
// in column c, then the 8 lanes' sums are added in lane order.
template <typename T, Unary Op>
__global__ void epilogue_backward_partials_kernel(UnaryParams p, const T* z, const T* fz,
                                                  const T* dy, T* dz, std::int64_t rows,
                                                  std::int64_t width, std::int64_t chunk_rows,
                                                  double* partials) {
  __shared__ double lane_sum[row_lanes][tile_columns];
  const std::int64_t col = std::int64_t{blockIdx.x} * tile_columns + threadIdx.x;
  const std::int64_t first = std::int64_t{blockIdx.y} * chunk_rows;
  const std::int64_t last = min(rows, first + chunk_rows);
  double acc = 0;
  if (col < width)
    for (std::int64_t r = first + threadIdx.y; r < last; r += row_lanes) {
      const std::int64_t i = r * width + col;
      const T d = epilogue_derivative<T, Op>(p, z[i], fz, i, dy[i]);
      dz[i] = d;
      acc += d;
    }
  lane_sum[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < width) {
    double s = 0;
    for (int l = 0; l < row_lanes; ++l) s += lane_sum[l][threadIdx.x];
    partials[std::int64_t{blockIdx.y} * width + col] = s;
  }
}

// Pass 2: reads chunks · H partials, writes H: one thread per column sums its partials in chunk
// order and adds the total to db; grid-stride over H, 256 threads.
template <typename T>
__global__ void epilogue_bias_fold_kernel(const double* partials, std::int64_t chunks,
                                          std::int64_t width, T* dbias) {
  ASBI_GRID_LOOP(col, width) {
    double s = 0;
    for (std::int64_t c = 0; c < chunks; ++c) s += partials[c * width + col];
    dbias[col] += static_cast<T>(s);
  }
}

}  // namespace

void CudaBackend::linear_epilogue(const Tensor& bias, Unary f, UnaryParams p,
                                  const Tensor& residual, Tensor& z, Tensor& y) {
  expect_device("linear_epilogue", {&bias, &residual, &z, &y});
  const std::int64_t n = z.numel();
  if (n == 0) return;
  const std::int64_t width = z.shape().last();
  with_dtype(z.dtype(), [&]<typename T>() {
    with_unary(f, [&]<Unary Op>() {
      linear_epilogue_kernel<T, Op><<<grid_for(n), block_size>>>(
          bias.defined() ? bias.data<T>() : nullptr, p,
          residual.defined() ? residual.data<T>() : nullptr, z.data<T>(), y.data<T>(), width, n);
    });
  });
  ASBI_CUDA_CHECK_LAUNCH("linear_epilogue_kernel");
}

void CudaBackend::linear_epilogue_backward(Unary f, UnaryParams p, const Tensor& z,
                                           const Tensor& fz, const Tensor& dy, Tensor& dz,
                                           Tensor* dbias) {
  expect_device("linear_epilogue_backward", {&z, &fz, &dy, &dz, dbias});
  const std::int64_t n = z.numel();
  if (n == 0) return;
  const std::int64_t width = z.shape().last(), rows = n / width;
  with_dtype(z.dtype(), [&]<typename T>() {
    const T* pfz = fz.defined() ? fz.data<T>() : nullptr;
    with_unary(f, [&]<Unary Op>() {
      if (!dbias) {
        epilogue_derivative_kernel<T, Op>
            <<<grid_for(n), block_size>>>(p, z.data<T>(), pfz, dy.data<T>(), dz.data<T>(), n);
        ASBI_CUDA_CHECK_LAUNCH("epilogue_derivative_kernel");
        return;
      }
      const std::int64_t chunk_rows =
          std::max(chunk_rows_min, (rows + max_chunks - 1) / max_chunks);
      const std::int64_t chunks = (rows + chunk_rows - 1) / chunk_rows;
      Scratch partials(static_cast<std::size_t>(chunks * width) * sizeof(double));
      const dim3 grid(static_cast<unsigned>((width + tile_columns - 1) / tile_columns),
                      static_cast<unsigned>(chunks));
      epilogue_backward_partials_kernel<T, Op>
          <<<grid, dim3(tile_columns, row_lanes)>>>(p, z.data<T>(), pfz, dy.data<T>(), dz.data<T>(),
                                                    rows, width, chunk_rows, partials.as<double>());
      ASBI_CUDA_CHECK_LAUNCH("epilogue_backward_partials_kernel");
      epilogue_bias_fold_kernel<T>
          <<<grid_for(width), block_size>>>(partials.as<double>(), chunks, width, dbias->data<T>());
      ASBI_CUDA_CHECK_LAUNCH("epilogue_bias_fold_kernel");
    });
  });
}

}  // namespace asbi::cuda
