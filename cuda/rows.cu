// Block copies along an axis and row gathers/scatters. Indices arrive on the host (they come from
// the data loader), so each call uploads them into a pooled scratch buffer first. Layer norm and
// set pooling are in norm_pool.cu.
#include <algorithm>
#include <numeric>
#include <vector>

#include "cuda/backend_impl.cuh"

namespace asbi::cuda {

using core::Tensor;

namespace {

// dst[o, dst_begin + i, k] (+)= src[o, src_begin + i, k], one thread per copied element.
template <typename T>
__global__ void copy_axis_kernel(const T* src, std::int64_t src_n, std::int64_t src_begin, T* dst,
                                 std::int64_t dst_n, std::int64_t dst_begin, std::int64_t len,
                                 std::int64_t inner, bool accumulate, std::int64_t count) {
  const std::int64_t block = len * inner;
  ASBI_GRID_LOOP(e, count) {
    const std::int64_t o = e / block, k = e % block;
    const T v = src[(o * src_n + src_begin) * inner + k];
    T& d = dst[(o * dst_n + dst_begin) * inner + k];
    d = accumulate ? d + v : v;
  }
}

template <typename T>
__global__ void gather_rows_kernel(const T* x, const std::int64_t* index, std::int64_t width, T* y,
                                   std::int64_t count) {
  ASBI_GRID_LOOP(e, count) y[e] = x[index[e / width] * width + e % width];
}

// One thread per (destination row, column) sums that row's sources in increasing source order,
// the order of the CPU's serial loop: repeated indices need no atomics and the sum repeats.
// plan = [segments + 1 offsets | segments destination rows | sources grouped by destination].
template <typename T>
__global__ void scatter_add_rows_kernel(const T* dy, const std::int64_t* plan,
                                        std::int64_t segments, std::int64_t width, T* dx) {
  const std::int64_t* offsets = plan;
  const std::int64_t* rows = plan + segments + 1;
  const std::int64_t* sources = rows + segments;
  ASBI_GRID_LOOP(e, segments * width) {
    const std::int64_t s = e / width, j = e % width;
    T& d = dx[rows[s] * width + j];
    T acc = d;
    for (std::int64_t p = offsets[s]; p < offsets[s + 1]; ++p) acc += dy[sources[p] * width + j];
    d = acc;
  }
}

// An out-of-range index would fault on the device and poison the whole context.
void check_indices(const char* op, std::span<const std::int64_t> index, std::int64_t rows) {
  for (std::size_t i = 0; i < index.size(); ++i)
    if (index[i] < 0 || index[i] >= rows)
      throw core::ValueError(core::str("cuda ", op, ": index[", i, "] = ", index[i],
                                       " is outside the ", rows, " rows"));
}

}  // namespace

void CudaBackend::copy_axis(const Tensor& src, int axis, std::int64_t src_begin, Tensor& dst,
                            std::int64_t dst_begin, std::int64_t len, bool accumulate) {
  expect_device("copy_axis", {&src, &dst});
  const int a = src.shape().normalize_axis(axis);
  const std::int64_t outer = src.shape().outer(a), inner = src.shape().inner(a);
  const std::int64_t count = outer * len * inner;
  if (count == 0) return;
  with_dtype(src.dtype(), [&]<typename T>() {
    copy_axis_kernel<T><<<grid_for(count), block_size>>>(src.data<T>(), src.shape()[a], src_begin,
                                                         dst.data<T>(), dst.shape()[a], dst_begin,
                                                         len, inner, accumulate, count);
  });
  ASBI_CUDA_CHECK_LAUNCH("copy_axis_kernel");
}

void CudaBackend::gather_rows(const Tensor& x, std::span<const std::int64_t> index, Tensor& y) {
  expect_device("gather_rows", {&x, &y});
  check_indices("gather_rows", index, x.shape().rows());
  const std::int64_t width = x.shape().cols();
  const std::int64_t count = static_cast<std::int64_t>(index.size()) * width;
  if (count == 0) return;
  Scratch device_index(index.size_bytes());
  device_index.upload(index.data(), index.size_bytes());
  with_dtype(x.dtype(), [&]<typename T>() {
    gather_rows_kernel<T><<<grid_for(count), block_size>>>(
        x.data<T>(), device_index.as<std::int64_t>(), width, y.data<T>(), count);
  });
  ASBI_CUDA_CHECK_LAUNCH("gather_rows_kernel");
}

void CudaBackend::scatter_add_rows(const Tensor& dy, std::span<const std::int64_t> index,
                                   Tensor& dx) {
  expect_device("scatter_add_rows", {&dy, &dx});
  check_indices("scatter_add_rows", index, dx.shape().rows());
  const std::int64_t width = dx.shape().cols();
  const auto n = static_cast<std::int64_t>(index.size());
  if (n == 0 || width == 0) return;
  // Group the sources by destination with a stable sort, which keeps each group in source order.
  std::vector<std::int64_t> order(index.size());
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t l, std::int64_t r) {
    return index[static_cast<std::size_t>(l)] < index[static_cast<std::size_t>(r)];
  });
  std::vector<std::int64_t> offsets{0}, rows;
  for (std::int64_t p = 0; p < n; ++p) {
    const std::int64_t row = index[static_cast<std::size_t>(order[static_cast<std::size_t>(p)])];
    if (!rows.empty() && rows.back() == row) {
      ++offsets.back();
    } else {
      rows.push_back(row);
      offsets.push_back(offsets.back() + 1);
    }
  }
  const auto segments = static_cast<std::int64_t>(rows.size());
  std::vector<std::int64_t> plan;
  plan.reserve(offsets.size() + rows.size() + order.size());
  plan.insert(plan.end(), offsets.begin(), offsets.end());
  plan.insert(plan.end(), rows.begin(), rows.end());
  plan.insert(plan.end(), order.begin(), order.end());
  const std::size_t plan_bytes = plan.size() * sizeof(std::int64_t);
  Scratch device_plan(plan_bytes);
  device_plan.upload(plan.data(), plan_bytes);
  with_dtype(dy.dtype(), [&]<typename T>() {
    scatter_add_rows_kernel<T><<<grid_for(segments * width), block_size>>>(
        dy.data<T>(), device_plan.as<std::int64_t>(), segments, width, dx.data<T>());
  });
  ASBI_CUDA_CHECK_LAUNCH("scatter_add_rows_kernel");
}

}  // namespace asbi::cuda
