// The fully fused small MLP (in the spirit of tiny-cuda-nn's fully_fused_mlp.cu): a float32
// network whose widths are all ≤ core::fused_mlp_max_width runs in one launch forward and one
// (plus a small fold) backward. The math and the buffer layouts are core::Backend's
// (core/backend.hpp, "fused small MLP"); the layer-by-layer reference is core/cpu/fused_mlp.cpp.
//
// Each block owns a tile of 64 rows. For every layer it stages W_l and b_l in shared memory, and
// the tile's activations never leave shared memory between layers: global memory sees x once,
// the parameters once per block, y once, and (training only) each z_l once.
//
// Shared memory per block, in floats (w = widest layer, at most 128):
//   weights: out · stride + out with stride = in | 1 (odd, so that the 32 lanes of a warp, which
//            read 32 consecutive rows of W at one column, fall in 32 distinct banks)
//   two activation tiles of 64 · w, read as [64, width of the layer at hand]
// which is at most 66.5 KiB + 64 KiB: above the default 48 KiB, so the launch opts in.
//
// Every sum runs in a fixed order (over k inside a thread, over a block's tiles in tile order,
// then over blocks in block order), with no atomics, so results repeat bit for bit.
#include <array>

#include "core/scalar_math.hpp"
#include "cuda/backend_impl.cuh"

namespace asbi::cuda {

using core::Tensor;
using core::Unary;
using core::UnaryParams;
using core::scalar::with_unary;

namespace {

constexpr int tile_rows = 64;
constexpr int mlp_threads = 256;
// Rows each thread carries in registers in the forward: one W_l[j, k] read from shared memory
// feeds this many FMAs.
constexpr int rows_per_thread = 4;
constexpr int max_layers = 16;
// The backward grid is capped so that its per-block dW partials stay small; the cap is a
// constant, so the grid and hence the summation order depend on the shapes alone.
constexpr std::int64_t backward_max_blocks = 256;

static_assert(tile_rows % rows_per_thread == 0);

// The network's shape, passed by value to the kernels.
struct MlpLayout {
  int layers;
  int width[max_layers + 1];
  std::int64_t parameter_at[max_layers];  // W_l's first element in the flat buffer; b_l follows
  std::int64_t hidden_at[max_layers];     // z_l's first element is rows · hidden_at[l]
  std::int64_t parameter_count;
  int widest;
  int weight_floats;  // the shared weight area: max_l out (in | 1) + out
};

MlpLayout layout_of(std::span<const std::int64_t> widths) {
  MlpLayout m{};
  m.layers = static_cast<int>(widths.size()) - 1;
  std::int64_t param = 0, hidden = 0;
  for (int l = 0; l <= m.layers; ++l) {
    m.width[l] = static_cast<int>(widths[static_cast<std::size_t>(l)]);
    m.widest = std::max(m.widest, m.width[l]);
  }
  for (int l = 0; l < m.layers; ++l) {
    const int in = m.width[l], out = m.width[l + 1];
    m.parameter_at[l] = param;
    m.hidden_at[l] = hidden;
    param += std::int64_t{out} * (in + 1);
    hidden += out;
    m.weight_floats = std::max(m.weight_floats, out * (in | 1) + out);
  }
  m.parameter_count = param;
  return m;
}

bool fits_fused_kernel(core::DType dtype, std::span<const std::int64_t> widths) {
  if (dtype != core::DType::f32 || widths.size() < 2 ||
      widths.size() > static_cast<std::size_t>(max_layers) + 1)
    return false;
  for (std::int64_t w : widths)
    if (w < 1 || w > core::fused_mlp_max_width) return false;
  return true;
}

std::size_t shared_bytes(const MlpLayout& m) {
  return (static_cast<std::size_t>(m.weight_floats) + 2u * tile_rows * m.widest) * sizeof(float);
}

// Copies layer l's W (into rows of `stride` floats) and b (after them) to shared memory.
__device__ inline void stage_layer(const float* parameters, const MlpLayout& m, int l,
                                   float* weights) {
  const int in = m.width[l], out = m.width[l + 1], stride = in | 1;
  const float* w = parameters + m.parameter_at[l];
  for (int e = threadIdx.x; e < out * in; e += blockDim.x)
    weights[(e / in) * stride + e % in] = w[e];
  for (int j = threadIdx.x; j < out; j += blockDim.x) weights[out * stride + j] = w[out * in + j];
}

// Forward. Reads x, the parameters (once per block) and writes y and, when z_saved is given,
// every hidden z_l. Grid: one block of 256 threads per 64-row tile. Thread (j, g) computes
// output column j for rows 4g … 4g + 3, the warp's 32 lanes being 32 consecutive columns.
template <Unary Op>
__global__ void __launch_bounds__(mlp_threads)
    fused_mlp_forward_kernel(const float* x, const float* parameters, MlpLayout m, UnaryParams p,
                             std::int64_t rows, float* z_saved, float* y) {
  extern __shared__ float shared[];
  float* weights = shared;
  float* act = weights + m.weight_floats;
  float* next = act + tile_rows * m.widest;
  const std::int64_t row0 = std::int64_t{blockIdx.x} * tile_rows;
  const int tile = static_cast<int>(min(std::int64_t{tile_rows}, rows - row0));

  // Rows past the end of x are zeros: their results stay finite and are never written.
  const int in0 = m.width[0];
  for (int e = threadIdx.x; e < tile_rows * in0; e += blockDim.x)
    act[e] = e / in0 < tile ? x[row0 * in0 + e] : 0.0f;

  for (int l = 0; l < m.layers; ++l) {
    const int in = m.width[l], out = m.width[l + 1], stride = in | 1;
    const bool last = l + 1 == m.layers;
    __syncthreads();  // the previous layer is done with `weights` and has written `act`
    stage_layer(parameters, m, l, weights);
    __syncthreads();
    const float* bias = weights + out * stride;
    for (int e = threadIdx.x; e < out * (tile_rows / rows_per_thread); e += blockDim.x) {
      const int j = e % out, r0 = (e / out) * rows_per_thread;
      float acc[rows_per_thread];
      for (int i = 0; i < rows_per_thread; ++i) acc[i] = bias[j];
      const float* w_j = weights + j * stride;
      const float* a = act + r0 * in;
      for (int k = 0; k < in; ++k) {
        const float w = w_j[k];
#pragma unroll
        for (int i = 0; i < rows_per_thread; ++i) acc[i] = fmaf(a[i * in + k], w, acc[i]);
      }
      for (int i = 0; i < rows_per_thread; ++i) {
        const int r = r0 + i;
        const std::int64_t at = (row0 + r) * out + j;
        if (last) {
          if (r < tile) y[at] = acc[i];
        } else {
          if (z_saved && r < tile) z_saved[rows * m.hidden_at[l] + at] = acc[i];
          next[r * out + j] = core::scalar::unary_value<float>(Op, p, acc[i]);
        }
      }
    }
    float* done = act;
    act = next;
    next = done;
  }
}

// Backward. Reads x, the parameters, every z_l and dy once per tile; writes dx (+=) and one dW/db
// partial per block into `partials` [blocks, parameter_count]. Grid: min(tiles, 256) blocks of
// 256 threads, block b taking tiles b, b + grid, … in order. Per tile, for l = L-1 … 0, with
// dz_l [64, out] in shared memory:
//   h_l (x, or f(z_{l-1}) recomputed)  → shared
//   partial dW_l += dz_lᵀ h_l, db_l += Σ_rows dz_l     (thread per (j, k): lanes along k)
//   dz_{l-1} = (dz_l W_l) ⊙ f'(z_{l-1}), or dx += dz_0 W_0   (thread per (r, k): lanes along k)
template <Unary Op>
__global__ void __launch_bounds__(mlp_threads)
    fused_mlp_backward_kernel(const float* x, const float* parameters, MlpLayout m, UnaryParams p,
                              std::int64_t rows, const float* z_saved, const float* dy, float* dx,
                              float* partials) {
  extern __shared__ float shared[];
  float* weights = shared;
  float* grad = weights + m.weight_floats;  // dz_l
  float* below = grad + tile_rows * m.widest;  // h_l, then dz_{l-1}
  float* block_partials = partials + std::int64_t{blockIdx.x} * m.parameter_count;
  const std::int64_t tiles = (rows + tile_rows - 1) / tile_rows;

  for (std::int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const bool first_tile = t == blockIdx.x;
    const std::int64_t row0 = t * tile_rows;
    const int tile = static_cast<int>(min(std::int64_t{tile_rows}, rows - row0));
    const int out_last = m.width[m.layers];
    __syncthreads();  // the previous tile is done with every shared buffer
    // Rows past the end have dz = 0, so they add nothing to any gradient.
    for (int e = threadIdx.x; e < tile_rows * out_last; e += blockDim.x)
      grad[e] = e / out_last < tile ? dy[row0 * out_last + e] : 0.0f;

    for (int l = m.layers - 1; l >= 0; --l) {
      const int in = m.width[l], out = m.width[l + 1], stride = in | 1;
      const float* z_below = l > 0 ? z_saved + rows * m.hidden_at[l - 1] : nullptr;
      __syncthreads();  // `grad` is written; `weights` and `below` are free
      stage_layer(parameters, m, l, weights);
      for (int e = threadIdx.x; e < tile_rows * in; e += blockDim.x) {
        float h = 0.0f;
        if (e / in < tile)
          h = l == 0 ? x[row0 * in + e]
                     : core::scalar::unary_value<float>(Op, p, z_below[row0 * in + e]);
        below[e] = h;
      }
      __syncthreads();

      float* dweight = block_partials + m.parameter_at[l];
      for (int e = threadIdx.x; e < out * in; e += blockDim.x) {
        const int j = e / in, k = e % in;
        float s = 0.0f;
        for (int r = 0; r < tile_rows; ++r) s = fmaf(grad[r * out + j], below[r * in + k], s);
        dweight[e] = first_tile ? s : dweight[e] + s;
      }
      for (int j = threadIdx.x; j < out; j += blockDim.x) {
        float s = 0.0f;
        for (int r = 0; r < tile_rows; ++r) s += grad[r * out + j];
        dweight[out * in + j] = first_tile ? s : dweight[out * in + j] + s;
      }
      if (l == 0 && !dx) break;
      __syncthreads();  // `below` (h_l) has been read

      for (int e = threadIdx.x; e < tile_rows * in; e += blockDim.x) {
        const int r = e / in, k = e % in;
        float s = 0.0f;
        for (int j = 0; j < out; ++j) s = fmaf(grad[r * out + j], weights[j * stride + k], s);
        if (l > 0) {
          const float z = r < tile ? z_below[row0 * in + e] : 0.0f;
          const float fz = core::scalar::unary_value<float>(Op, p, z);
          below[e] = s * core::scalar::unary_derivative<float>(Op, p, z, fz);
        } else if (r < tile) {
          dx[row0 * in + e] += s;
        }
      }
      float* done = grad;
      grad = below;
      below = done;
    }
  }
}

// Folds the per-block partials: dparameters[i] += Σ_b partials[b, i], b in order, in double.
// Reads blocks · parameter_count floats, writes parameter_count; grid-stride, 256 threads.
__global__ void fused_mlp_fold_kernel(const float* partials, std::int64_t blocks,
                                      std::int64_t count, float* dparameters) {
  ASBI_GRID_LOOP(i, count) {
    double s = 0;
    for (std::int64_t b = 0; b < blocks; ++b) s += partials[b * count + i];
    dparameters[i] += static_cast<float>(s);
  }
}

template <typename Kernel>
void allow_shared(Kernel kernel, std::size_t bytes) {
  ASBI_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(bytes)));
}

}  // namespace

void CudaBackend::fused_mlp_forward(const Tensor& x, const Tensor& parameters,
                                    std::span<const std::int64_t> widths, Unary f, UnaryParams p,
                                    Tensor& y, Tensor* hidden) {
  expect_device("fused_mlp_forward", {&x, &parameters, &y, hidden});
  if (!fits_fused_kernel(x.dtype(), widths))
    return Backend::fused_mlp_forward(x, parameters, widths, f, p, y, hidden);
  const std::int64_t rows = x.numel() / widths[0];
  if (rows == 0) return;
  const MlpLayout m = layout_of(widths);
  const std::size_t bytes = shared_bytes(m);
  const auto grid = static_cast<unsigned>((rows + tile_rows - 1) / tile_rows);
  with_unary(f, [&]<Unary Op>() {
    allow_shared(fused_mlp_forward_kernel<Op>, bytes);
    fused_mlp_forward_kernel<Op><<<grid, mlp_threads, bytes>>>(
        x.data<float>(), parameters.data<float>(), m, p, rows,
        hidden ? hidden->data<float>() : nullptr, y.data<float>());
  });
  ASBI_CUDA_CHECK_LAUNCH("fused_mlp_forward_kernel");
}

void CudaBackend::fused_mlp_backward(const Tensor& x, const Tensor& parameters,
                                     std::span<const std::int64_t> widths, Unary f, UnaryParams p,
                                     const Tensor& hidden, const Tensor& dy, Tensor* dx,
                                     Tensor* dparameters) {
  expect_device("fused_mlp_backward", {&x, &parameters, &hidden, &dy, dx, dparameters});
  if (!fits_fused_kernel(x.dtype(), widths))
    return Backend::fused_mlp_backward(x, parameters, widths, f, p, hidden, dy, dx, dparameters);
  const std::int64_t rows = x.numel() / widths[0];
  if (rows == 0 || (!dx && !dparameters)) return;
  const MlpLayout m = layout_of(widths);
  const std::size_t bytes = shared_bytes(m);
  const std::int64_t blocks =
      std::min(backward_max_blocks, (rows + tile_rows - 1) / tile_rows);
  Scratch partials(static_cast<std::size_t>(blocks * m.parameter_count) * sizeof(float));
  with_unary(f, [&]<Unary Op>() {
    allow_shared(fused_mlp_backward_kernel<Op>, bytes);
    fused_mlp_backward_kernel<Op><<<static_cast<unsigned>(blocks), mlp_threads, bytes>>>(
        x.data<float>(), parameters.data<float>(), m, p, rows,
        hidden.defined() ? hidden.data<float>() : nullptr, dy.data<float>(),
        dx ? dx->data<float>() : nullptr, partials.as<float>());
  });
  ASBI_CUDA_CHECK_LAUNCH("fused_mlp_backward_kernel");
  if (!dparameters) return;
  fused_mlp_fold_kernel<<<grid_for(m.parameter_count), block_size>>>(
      partials.as<float>(), blocks, m.parameter_count, dparameters->data<float>());
  ASBI_CUDA_CHECK_LAUNCH("fused_mlp_fold_kernel");
}

}  // namespace asbi::cuda
