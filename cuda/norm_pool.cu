// Layer normalisation over the last axis and set mean-pooling, with the CPU backend's semantics
// (core/cpu/rows.cpp): row statistics and pooled sums accumulate in double, mean and rstd are
// stored in the tensor's dtype and x̂ is formed from the stored values, backward kernels add into
// their gradients.
//
// Every sum runs in an order fixed by the shapes alone, so results repeat bit for bit:
// - a row statistic is a warp's 32 strided lane sums folded by an __shfl_xor_sync butterfly;
// - a column sum over rows (dγ, dβ) takes two passes as in epilogue.cu: per-(row chunk, 32-column
//   tile) partials folded in lane order, then each column's partials folded in chunk order;
// - a pooled sum gives each (set, 32-column tile) to one block whose 8 row lanes are folded in
//   lane order.
#include <cmath>
#include <vector>

#include "cuda/backend_impl.cuh"

namespace asbi::cuda {

using core::Tensor;

namespace {

constexpr int warp_size = 32;
constexpr int rows_per_block = block_size / warp_size;  // layer norm: one warp per row
// Column-tiled kernels: 32 columns (one warp, so each row segment is one coalesced access) × 8
// row lanes.
constexpr int tile_columns = 32;
constexpr int row_lanes = 8;
// Rows per chunk of the dγ/dβ partials, and the most chunks (partials per column) they make.
constexpr std::int64_t chunk_rows_min = 64;
constexpr std::int64_t max_chunks = 256;

// The sum of v over the warp, the same in every lane: each step adds lanes i and i ^ offset, and
// the pairing does not depend on timing.
__device__ inline double warp_sum(double v) {
  for (int offset = warp_size / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Warps of the grid, walking rows warp-stride.
__device__ inline std::int64_t first_warp() {
  return (std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x) / warp_size;
}
__device__ inline std::int64_t warp_stride() {
  return std::int64_t{gridDim.x} * blockDim.x / warp_size;
}

// Blocks for one warp per row, capped like grid_for.
unsigned grid_for_rows(std::int64_t rows) {
  const std::int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, std::int64_t{1} << 16));
}

unsigned column_tiles(std::int64_t width) {
  return static_cast<unsigned>((width + tile_columns - 1) / tile_columns);
}

// Reads x three times (the re-reads of a row hit L1/L2), γ and β; writes y, mean, rstd. One warp
// per row, 8 rows per 256-thread block, warp-stride over the rows.
template <typename T>
__global__ void layer_norm_kernel(const T* x, const T* gamma, const T* beta, double eps,
                                  std::int64_t rows, std::int64_t width, T* y, T* mean, T* rstd) {
  const int lane = static_cast<int>(threadIdx.x % warp_size);
  for (std::int64_t r = first_warp(); r < rows; r += warp_stride()) {
    const T* row = x + r * width;
    double s = 0;
    for (std::int64_t j = lane; j < width; j += warp_size) s += row[j];
    const double m = warp_sum(s) / static_cast<double>(width);
    double v = 0;  // two passes, as the CPU: the one-pass formula loses precision when |μ| ≫ σ
    for (std::int64_t j = lane; j < width; j += warp_size) v += (row[j] - m) * (row[j] - m);
    v = warp_sum(v) / static_cast<double>(width);
    const T mu = static_cast<T>(m);
    const T inv = static_cast<T>(1 / sqrt(v + eps));
    if (lane == 0) {
      mean[r] = mu;
      rstd[r] = inv;
    }
    T* out = y + r * width;
    for (std::int64_t j = lane; j < width; j += warp_size) {
      const T xhat = (row[j] - mu) * inv;
      out[j] = (gamma ? xhat * gamma[j] : xhat) + (beta ? beta[j] : T(0));
    }
  }
}

// dx += rstd (dx̂ - mean(dx̂) - x̂ mean(dx̂ ⊙ x̂)) with dx̂ = dy ⊙ γ. Reads x, dy twice each (the
// second time from L1/L2), γ, mean, rstd; reads and writes dx. One warp per row, as the forward.
template <typename T>
__global__ void layer_norm_backward_dx_kernel(const T* x, const T* gamma, const T* mean,
                                              const T* rstd, const T* dy, std::int64_t rows,
                                              std::int64_t width, T* dx) {
  const int lane = static_cast<int>(threadIdx.x % warp_size);
  for (std::int64_t r = first_warp(); r < rows; r += warp_stride()) {
    const T* row = x + r * width;
    const T* d = dy + r * width;
    const T mu = mean[r], rs = rstd[r];
    double sum_dxhat = 0, sum_dxhat_xhat = 0;
    for (std::int64_t j = lane; j < width; j += warp_size) {
      const T xhat = (row[j] - mu) * rs;
      const T dxhat = gamma ? d[j] * gamma[j] : d[j];
      sum_dxhat += dxhat;
      sum_dxhat_xhat += dxhat * xhat;
    }
    const T mean_dxhat = static_cast<T>(warp_sum(sum_dxhat) / static_cast<double>(width));
    const T mean_dxhat_xhat = static_cast<T>(warp_sum(sum_dxhat_xhat) / static_cast<double>(width));
    T* g = dx + r * width;
    for (std::int64_t j = lane; j < width; j += warp_size) {
      const T xhat = (row[j] - mu) * rs;
      const T dxhat = gamma ? d[j] * gamma[j] : d[j];
      g[j] += rs * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
    }
  }
}

// dγ/dβ pass 1: reads x, dy, mean, rstd; writes chunks · H double partials of Σ dy ⊙ x̂ and of
// Σ dy (either may be skipped). Grid (⌈H / 32⌉ column tiles, chunks), 32 × 8 threads: thread
// (c, l) walks rows l, l + 8, … of its chunk in column c, then the lanes are added in lane order.
template <typename T>
__global__ void layer_norm_affine_partials_kernel(const T* x, const T* mean, const T* rstd,
                                                  const T* dy, std::int64_t rows,
                                                  std::int64_t width, std::int64_t chunk_rows,
                                                  double* gamma_partials, double* beta_partials) {
  __shared__ double gamma_lanes[row_lanes][tile_columns];
  __shared__ double beta_lanes[row_lanes][tile_columns];
  const std::int64_t col = std::int64_t{blockIdx.x} * tile_columns + threadIdx.x;
  const std::int64_t first = std::int64_t{blockIdx.y} * chunk_rows;
  const std::int64_t last = min(rows, first + chunk_rows);
  double sum_gamma = 0, sum_beta = 0;
  if (col < width)
    for (std::int64_t r = first + threadIdx.y; r < last; r += row_lanes) {
      const std::int64_t i = r * width + col;
      const T d = dy[i];
      if (gamma_partials) sum_gamma += d * (x[i] - mean[r]) * rstd[r];  // the CPU's order
      sum_beta += d;
    }
  gamma_lanes[threadIdx.y][threadIdx.x] = sum_gamma;
  beta_lanes[threadIdx.y][threadIdx.x] = sum_beta;
  __syncthreads();
  if (threadIdx.y == 0 && col < width) {
    double g = 0, b = 0;
    for (int l = 0; l < row_lanes; ++l) {
      g += gamma_lanes[l][threadIdx.x];
      b += beta_lanes[l][threadIdx.x];
    }
    const std::int64_t p = std::int64_t{blockIdx.y} * width + col;
    if (gamma_partials) gamma_partials[p] = g;
    if (beta_partials) beta_partials[p] = b;
  }
}

// dγ/dβ pass 2: reads chunks · H partials of each, adds H to each gradient: one thread per column
// folds its partials in chunk order; grid-stride over H, 256 threads.
template <typename T>
__global__ void column_fold_kernel(const double* partials, std::int64_t chunks, std::int64_t width,
                                   T* grad) {
  ASBI_GRID_LOOP(col, width) {
    double s = 0;
    for (std::int64_t c = 0; c < chunks; ++c) s += partials[c * width + col];
    grad[col] += static_cast<T>(s);
  }
}

// Where set b's rows begin and how many it has: dense sets are [B, S, H] (no offsets), ragged
// ones packed with offsets[b] = Σ_{c<b} n_c and offsets[B] = N.
struct SetRows {
  const std::int64_t* offsets;  // null for dense sets
  std::int64_t dense_size;      // S
  __device__ std::int64_t first(std::int64_t b) const {
    return offsets ? offsets[b] : b * dense_size;
  }
  __device__ std::int64_t count(std::int64_t b) const {
    return offsets ? offsets[b + 1] - offsets[b] : dense_size;
  }
};

// Reads the N · H elements once (each warp reads 32 consecutive elements of a row), writes B · H
// means. Grid (B sets, ⌈H / 32⌉ column tiles), 32 × 8 threads: thread (c, l) sums rows l, l + 8, …
// of its set in column c in double, then the lanes are added in lane order.
template <typename T>
__global__ void mean_pool_kernel(const T* x, SetRows sets, std::int64_t width, T* y) {
  __shared__ double lane_sum[row_lanes][tile_columns];
  const std::int64_t b = blockIdx.x;
  const std::int64_t col = std::int64_t{blockIdx.y} * tile_columns + threadIdx.x;
  const std::int64_t first = sets.first(b), n = sets.count(b);
  double acc = 0;
  if (col < width) {
    // Several loads in flight per thread: one at a time would bound the bandwidth by latency.
#pragma unroll 4
    for (std::int64_t i = threadIdx.y; i < n; i += row_lanes) acc += x[(first + i) * width + col];
  }
  lane_sum[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < width) {
    double s = 0;
    for (int l = 0; l < row_lanes; ++l) s += lane_sum[l][threadIdx.x];
    y[b * width + col] = static_cast<T>(s / static_cast<double>(n));
  }
}

// dx_{b,i} += dy_b / n_b. Reads B · H of dy, reads and writes the N · H elements of dx, coalesced
// along H. Same grid and block as the forward; each thread reads its dy once.
template <typename T>
__global__ void mean_pool_backward_kernel(const T* dy, SetRows sets, std::int64_t width, T* dx) {
  const std::int64_t b = blockIdx.x;
  const std::int64_t col = std::int64_t{blockIdx.y} * tile_columns + threadIdx.x;
  if (col >= width) return;
  const std::int64_t first = sets.first(b), n = sets.count(b);
  const T g = dy[b * width + col] * (T(1) / static_cast<T>(n));  // the CPU's dy · (1/n) in T
#pragma unroll 4
  for (std::int64_t i = threadIdx.y; i < n; i += row_lanes) dx[(first + i) * width + col] += g;
}

// The offsets of packed sets, checked on the host: a length below 1 or a total other than x's
// rows would send the kernels outside x.
std::vector<std::int64_t> set_offsets(const char* op, std::span<const std::int64_t> lengths,
                                      std::int64_t rows) {
  std::vector<std::int64_t> offsets{0};
  offsets.reserve(lengths.size() + 1);
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    if (lengths[b] < 1)
      throw core::ValueError(core::str("cuda ", op, ": set ", b, " has length ", lengths[b],
                                       "; every set needs at least one element"));
    offsets.push_back(offsets.back() + lengths[b]);
  }
  if (offsets.back() != rows)
    throw core::ValueError(core::str("cuda ", op, ": the set lengths add up to ", offsets.back(),
                                     " but there are ", rows, " rows"));
  return offsets;
}

// Launches a (set, column tile) kernel over dense or ragged sets of `rows` packed rows.
template <typename Launch>
void for_sets(const char* op, std::span<const std::int64_t> lengths, std::int64_t sets,
              std::int64_t dense_size, std::int64_t rows, std::int64_t width, Launch&& launch) {
  if (sets == 0 || width == 0) return;
  const dim3 grid(static_cast<unsigned>(sets), column_tiles(width));
  const dim3 block(tile_columns, row_lanes);
  if (lengths.empty()) {
    launch(grid, block, SetRows{nullptr, dense_size});
    return;
  }
  if (static_cast<std::int64_t>(lengths.size()) != sets)
    throw core::ValueError(
        core::str("cuda ", op, ": ", lengths.size(), " set lengths for ", sets, " sets"));
  const std::vector<std::int64_t> offsets = set_offsets(op, lengths, rows);
  const std::size_t bytes = offsets.size() * sizeof(std::int64_t);
  Scratch device_offsets(bytes);
  device_offsets.upload(offsets.data(), bytes);
  launch(grid, block, SetRows{device_offsets.as<std::int64_t>(), 0});
}

}  // namespace

void CudaBackend::layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps,
                             Tensor& y, Tensor& mean, Tensor& rstd) {
  expect_device("layer_norm", {&x, &gamma, &beta, &y, &mean, &rstd});
  if (x.numel() == 0) return;
  const std::int64_t width = x.shape().last(), rows = x.numel() / width;
  with_dtype(x.dtype(), [&]<typename T>() {
    layer_norm_kernel<T><<<grid_for_rows(rows), block_size>>>(
        x.data<T>(), gamma.defined() ? gamma.data<T>() : nullptr,
        beta.defined() ? beta.data<T>() : nullptr, eps, rows, width, y.data<T>(), mean.data<T>(),
        rstd.data<T>());
  });
  ASBI_CUDA_CHECK_LAUNCH("layer_norm_kernel");
}

void CudaBackend::layer_norm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                      const Tensor& rstd, const Tensor& dy, Tensor* dx,
                                      Tensor* dgamma, Tensor* dbeta) {
  expect_device("layer_norm_backward", {&x, &gamma, &mean, &rstd, &dy, dx, dgamma, dbeta});
  if (x.numel() == 0) return;
  const std::int64_t width = x.shape().last(), rows = x.numel() / width;
  with_dtype(x.dtype(), [&]<typename T>() {
    if (dgamma || dbeta) {
      const std::int64_t chunk_rows =
          std::max(chunk_rows_min, (rows + max_chunks - 1) / max_chunks);
      const std::int64_t chunks = (rows + chunk_rows - 1) / chunk_rows;
      const std::size_t partial_bytes = static_cast<std::size_t>(chunks * width) * sizeof(double);
      Scratch gamma_partials(dgamma ? partial_bytes : 0);
      Scratch beta_partials(dbeta ? partial_bytes : 0);
      const dim3 grid(column_tiles(width), static_cast<unsigned>(chunks));
      layer_norm_affine_partials_kernel<T><<<grid, dim3(tile_columns, row_lanes)>>>(
          x.data<T>(), mean.data<T>(), rstd.data<T>(), dy.data<T>(), rows, width, chunk_rows,
          gamma_partials.as<double>(), beta_partials.as<double>());
      ASBI_CUDA_CHECK_LAUNCH("layer_norm_affine_partials_kernel");
      if (dgamma) {
        column_fold_kernel<T><<<grid_for(width), block_size>>>(gamma_partials.as<double>(), chunks,
                                                               width, dgamma->data<T>());
        ASBI_CUDA_CHECK_LAUNCH("column_fold_kernel");
      }
      if (dbeta) {
        column_fold_kernel<T><<<grid_for(width), block_size>>>(beta_partials.as<double>(), chunks,
                                                               width, dbeta->data<T>());
        ASBI_CUDA_CHECK_LAUNCH("column_fold_kernel");
      }
    }
    if (dx) {
      layer_norm_backward_dx_kernel<T><<<grid_for_rows(rows), block_size>>>(
          x.data<T>(), gamma.defined() ? gamma.data<T>() : nullptr, mean.data<T>(), rstd.data<T>(),
          dy.data<T>(), rows, width, dx->data<T>());
      ASBI_CUDA_CHECK_LAUNCH("layer_norm_backward_dx_kernel");
    }
  });
}

void CudaBackend::mean_pool(const Tensor& x, std::span<const std::int64_t> lengths, Tensor& y) {
  expect_device("mean_pool", {&x, &y});
  const std::int64_t width = y.shape().last(), sets = y.shape()[0];
  const std::int64_t dense_size = lengths.empty() ? x.shape()[1] : 0;
  const std::int64_t rows = width == 0 ? 0 : x.numel() / width;
  with_dtype(x.dtype(), [&]<typename T>() {
    for_sets("mean_pool", lengths, sets, dense_size, rows, width,
             [&](dim3 grid, dim3 block, SetRows set_rows) {
               mean_pool_kernel<T><<<grid, block>>>(x.data<T>(), set_rows, width, y.data<T>());
               ASBI_CUDA_CHECK_LAUNCH("mean_pool_kernel");
             });
  });
}

void CudaBackend::mean_pool_backward(const Tensor& dy, std::span<const std::int64_t> lengths,
                                     Tensor& dx) {
  expect_device("mean_pool_backward", {&dy, &dx});
  const std::int64_t width = dy.shape().last(), sets = dy.shape()[0];
  const std::int64_t dense_size = lengths.empty() ? dx.shape()[1] : 0;
  const std::int64_t rows = width == 0 ? 0 : dx.numel() / width;
  with_dtype(dy.dtype(), [&]<typename T>() {
    for_sets("mean_pool_backward", lengths, sets, dense_size, rows, width,
             [&](dim3 grid, dim3 block, SetRows set_rows) {
               mean_pool_backward_kernel<T>
                   <<<grid, block>>>(dy.data<T>(), set_rows, width, dx.data<T>());
               ASBI_CUDA_CHECK_LAUNCH("mean_pool_backward_kernel");
             });
  });
}

}  // namespace asbi::cuda
