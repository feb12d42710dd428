#pragma once
// The CPU implementation of the device seam: Eigen for matrix products, OpenMP across rows or
// elements, loops written so that the compiler vectorises them. Private to core/.
#include <omp.h>

#include <algorithm>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"

namespace asbi::core::cpu {

Backend& backend();

// Below this many elements a loop runs on one thread: waking the team costs more than it saves.
constexpr std::int64_t parallel_grain = 1 << 15;

// Runs body(begin, end) over [0, n): in one call on this thread when `work` (elements touched) is
// below parallel_grain, otherwise in one contiguous chunk per OpenMP thread. The decision is made
// here and not with OpenMP's if() clause because libgomp opens a parallel region even when that
// clause is false, about 200 ns per kernel call, which is most of the cost of an op on a small
// tensor. The chunks depend only on n and the thread count, so results are reproducible.
template <typename Body>
void parallel_for(std::int64_t n, std::int64_t work, Body&& body) {
  if (work <= parallel_grain || n < 2 || omp_get_max_threads() == 1 || omp_in_parallel()) {
    body(std::int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const std::int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const std::int64_t chunk = (n + threads - 1) / threads;
    const std::int64_t begin = std::min(n, t * chunk), end = std::min(n, begin + chunk);
    if (begin < end) body(begin, end);
  }
}

// Calls f.template operator()<T>() with T the tensor's element type.
template <typename F>
decltype(auto) with_dtype(DType dtype, F&& f) {
  if (dtype == DType::f64) return f.template operator()<double>();
  return f.template operator()<float>();
}

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::cpu; }
  std::string description() const override;
  void* allocate(std::size_t bytes) override;
  void deallocate(void* ptr, std::size_t bytes) override;
  void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                  std::size_t bytes) override;

  void fill(Tensor& y, double value) override;
  void cast(const Tensor& x, Tensor& y) override;
  void axpy(double alpha, const Tensor& x, Tensor& y) override;
  void unary(Unary op, UnaryParams p, const Tensor& x, Tensor& y) override;
  void unary_backward(Unary op, UnaryParams p, const Tensor& x, const Tensor& y,
                      const Tensor& dy, Tensor& dx) override;
  void binary(Binary op, const Tensor& a, const Tensor& b, Tensor& y) override;
  void binary_backward(Binary op, const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da,
                       Tensor* db) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& y) override;
  void where_backward(const Tensor& cond, const Tensor& dy, Tensor* da, Tensor* db) override;

  void gemm(bool trans_a, bool trans_b, double alpha, const Tensor& a, const Tensor& b,
            double beta, Tensor& c) override;
  void add_bias(const Tensor& bias, Tensor& y) override;
  void lu_solve_rows(const Tensor& lower, const Tensor& upper, const Tensor& y,
                     Tensor& x) override;

  void sum_axis(const Tensor& x, int axis, double scale, bool accumulate, Tensor& y) override;
  void sum_all(const Tensor& x, double scale, bool accumulate, Tensor& y) override;
  void broadcast_axis(const Tensor& dy, int axis, double scale, Tensor& dx) override;

  void logsumexp(const Tensor& x, Tensor& y) override;
  void logsumexp_backward(const Tensor& x, const Tensor& y, const Tensor& dy,
                          Tensor& dx) override;
  void softmax(const Tensor& x, bool log, Tensor& y) override;
  void softmax_backward(const Tensor& y, const Tensor& dy, bool log, Tensor& dx) override;
  void layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, Tensor& y,
                  Tensor& mean, Tensor& rstd) override;
  void layer_norm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean,
                           const Tensor& rstd, const Tensor& dy, Tensor* dx, Tensor* dgamma,
                           Tensor* dbeta) override;

  void mean_pool(const Tensor& x, std::span<const std::int64_t> lengths, Tensor& y) override;
  void mean_pool_backward(const Tensor& dy, std::span<const std::int64_t> lengths,
                          Tensor& dx) override;

  void copy_axis(const Tensor& src, int axis, std::int64_t src_begin, Tensor& dst,
                 std::int64_t dst_begin, std::int64_t len, bool accumulate) override;
  void gather_rows(const Tensor& x, std::span<const std::int64_t> index, Tensor& y) override;
  void scatter_add_rows(const Tensor& dy, std::span<const std::int64_t> index,
                        Tensor& dx) override;

  void rq_spline(const Tensor& x, const Tensor& widths, const Tensor& heights,
                 const Tensor& derivatives, const RqSplineParams& p, bool inverse, Tensor& y,
                 Tensor& log_det) override;
  void rq_spline_backward(const Tensor& x, const Tensor& widths, const Tensor& heights,
                          const Tensor& derivatives, const RqSplineParams& p, bool inverse,
                          const Tensor& dy, const Tensor& dlog_det, Tensor* dx, Tensor* dwidths,
                          Tensor* dheights, Tensor* dderivatives) override;

  void linear_epilogue(const Tensor& bias, Unary f, UnaryParams p, const Tensor& residual,
                       Tensor& z, Tensor& y) override;
  void linear_epilogue_backward(Unary f, UnaryParams p, const Tensor& z, const Tensor& fz,
                                const Tensor& dy, Tensor& dz, Tensor* dbias) override;

  void adam_step(const AdamStep& step, std::span<const AdamTensors> parameters) override;

  void random_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                      Tensor& y) override;
  void random_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                     Tensor& y) override;
  void dropout_mask(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                    double drop_probability, double keep_scale, Tensor& y) override;

 private:
  // gemm on as many threads as OpenMP allows at the call.
  void gemm_product(bool trans_a, bool trans_b, double alpha, const Tensor& a, const Tensor& b,
                    double beta, Tensor& c);
};

}  // namespace asbi::core::cpu
