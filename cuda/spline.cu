// The rational-quadratic spline: one thread per element, each normalising its own K bins in local
// memory with the per-element functions of core/spline_math.hpp, the same the CPU kernel calls.
// Each element reads and writes only its own rows, so the backward needs no atomics and its sums
// come out the same from run to run.
#include "core/spline_math.hpp"
#include "cuda/backend_impl.cuh"

namespace asbi::cuda {

using core::RqSplineParams;
using core::Tensor;
namespace spline = core::spline;

namespace {

template <typename T>
__global__ void rq_spline_kernel(const T* x, const T* uw, const T* uh, const T* ud,
                                 RqSplineParams p, bool inverse, T* y, T* log_det, std::int64_t n) {
  const int bins = p.bins;
  ASBI_GRID_LOOP(i, n) {
    T width_prob[spline::max_bins], height_prob[spline::max_bins];
    T interior[spline::max_bins - 1];
    const spline::Element<T> e =
        spline::prepare_element(uw + i * bins, uh + i * bins, ud + i * (bins - 1), bins,
                                T(p.min_derivative), width_prob, height_prob, interior);
    spline::rq_spline_element(x[i], e, p, inverse, y[i], log_det[i]);
  }
}

// dy or dlog_det may be null (read as zero), and so may any gradient (skipped).
template <typename T>
__global__ void rq_spline_backward_kernel(const T* x, const T* uw, const T* uh, const T* ud,
                                          RqSplineParams p, bool inverse, const T* dy,
                                          const T* dlog_det, T* dx, T* dwidths, T* dheights,
                                          T* dderivatives, std::int64_t n) {
  const int bins = p.bins;
  ASBI_GRID_LOOP(i, n) {
    T width_prob[spline::max_bins], height_prob[spline::max_bins];
    T interior[spline::max_bins - 1];
    const spline::Element<T> e =
        spline::prepare_element(uw + i * bins, uh + i * bins, ud + i * (bins - 1), bins,
                                T(p.min_derivative), width_prob, height_prob, interior);
    spline::rq_spline_element_backward(x[i], e, p, inverse, dy ? dy[i] : T(0),
                                       dlog_det ? dlog_det[i] : T(0), dx ? dx + i : nullptr,
                                       dwidths ? dwidths + i * bins : nullptr,
                                       dheights ? dheights + i * bins : nullptr,
                                       dderivatives ? dderivatives + i * (bins - 1) : nullptr);
  }
}

template <typename T>
T* data_or_null(const Tensor* t) {
  return t && t->defined() ? t->data<T>() : nullptr;
}

}  // namespace

void CudaBackend::rq_spline(const Tensor& x, const Tensor& widths, const Tensor& heights,
                            const Tensor& derivatives, const RqSplineParams& p, bool inverse,
                            Tensor& y, Tensor& log_det) {
  expect_device("rq_spline", {&x, &widths, &heights, &derivatives, &y, &log_det});
  spline::check_bins("cuda rq_spline", p.bins);
  const std::int64_t n = x.numel();
  if (n == 0) return;
  with_dtype(x.dtype(), [&]<typename T>() {
    rq_spline_kernel<T><<<grid_for(n), block_size>>>(x.data<T>(), widths.data<T>(),
                                                     heights.data<T>(), derivatives.data<T>(), p,
                                                     inverse, y.data<T>(), log_det.data<T>(), n);
  });
  ASBI_CUDA_CHECK_LAUNCH("rq_spline_kernel");
}

void CudaBackend::rq_spline_backward(const Tensor& x, const Tensor& widths, const Tensor& heights,
                                     const Tensor& derivatives, const RqSplineParams& p,
                                     bool inverse, const Tensor& dy, const Tensor& dlog_det,
                                     Tensor* dx, Tensor* dwidths, Tensor* dheights,
                                     Tensor* dderivatives) {
  expect_device("rq_spline_backward", {&x, &widths, &heights, &derivatives, &dy, &dlog_det, dx,
                                       dwidths, dheights, dderivatives});
  spline::check_bins("cuda rq_spline_backward", p.bins);
  const std::int64_t n = x.numel();
  if (n == 0) return;
  with_dtype(x.dtype(), [&]<typename T>() {
    rq_spline_backward_kernel<T><<<grid_for(n), block_size>>>(
        x.data<T>(), widths.data<T>(), heights.data<T>(), derivatives.data<T>(), p, inverse,
        data_or_null<T>(&dy), data_or_null<T>(&dlog_det), data_or_null<T>(dx),
        data_or_null<T>(dwidths), data_or_null<T>(dheights), data_or_null<T>(dderivatives), n);
  });
  ASBI_CUDA_CHECK_LAUNCH("rq_spline_backward_kernel");
}

}  // namespace asbi::cuda
