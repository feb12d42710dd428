#pragma once
// The CUDA implementation of the device seam, shared by the .cu files that define its kernels:
// the class itself, dtype dispatch and launch geometry. Private to cuda/.
//
// Every kernel runs on the legacy default stream (0), so kernels, cudaMemcpy and the reuse of
// pooled blocks are ordered by issue alone. Kernels favour being obviously right over being fast:
// grid-stride loops, one thread per output for reductions, sums in a fixed order (no float
// atomics) so that a result does not change from run to run.
#include <cublas_v2.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <span>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"
#include "cuda/check.cuh"

namespace asbi::cuda {

constexpr int block_size = 256;

// Blocks for a grid-stride loop over n items; the cap only bounds the grid, the loop covers all.
inline unsigned grid_for(std::int64_t n) {
  const std::int64_t blocks = (n + block_size - 1) / block_size;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, std::int64_t{1} << 16));
}

// for (i in [0, n)) spread over the whole grid.
#define ASBI_GRID_LOOP(i, n)                                                          \
  for (std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < (n); \
       i += std::int64_t{gridDim.x} * blockDim.x)

// Calls f.template operator()<T>() with T the tensor's element type.
template <typename F>
decltype(auto) with_dtype(core::DType dtype, F&& f) {
  if (dtype == core::DType::f64) return f.template operator()<double>();
  return f.template operator()<float>();
}

class CudaBackend final : public core::Backend {
 public:
  core::Device device() const override { return core::Device::cuda; }
  bool available() const override;
  std::string description() const override;

  void* allocate(std::size_t bytes) override;
  void deallocate(void* ptr, std::size_t bytes) override;
  void copy_bytes(void* dst, core::Device dst_device, const void* src, core::Device src_device,
                  std::size_t bytes) override;
  void synchronize() override;

  void fill(core::Tensor& y, double value) override;
  void cast(const core::Tensor& x, core::Tensor& y) override;
  void axpy(double alpha, const core::Tensor& x, core::Tensor& y) override;
  void unary(core::Unary op, core::UnaryParams p, const core::Tensor& x, core::Tensor& y) override;
  void unary_backward(core::Unary op, core::UnaryParams p, const core::Tensor& x,
                      const core::Tensor& y, const core::Tensor& dy, core::Tensor& dx) override;
  void binary(core::Binary op, const core::Tensor& a, const core::Tensor& b,
              core::Tensor& y) override;
  void binary_backward(core::Binary op, const core::Tensor& a, const core::Tensor& b,
                       const core::Tensor& dy, core::Tensor* da, core::Tensor* db) override;
  void where(const core::Tensor& cond, const core::Tensor& a, const core::Tensor& b,
             core::Tensor& y) override;
  void where_backward(const core::Tensor& cond, const core::Tensor& dy, core::Tensor* da,
                      core::Tensor* db) override;

  void gemm(bool trans_a, bool trans_b, double alpha, const core::Tensor& a, const core::Tensor& b,
            double beta, core::Tensor& c) override;
  void add_bias(const core::Tensor& bias, core::Tensor& y) override;
  void lu_solve_rows(const core::Tensor& lower, const core::Tensor& upper, const core::Tensor& y,
                     core::Tensor& x) override;

  void sum_axis(const core::Tensor& x, int axis, double scale, bool accumulate,
                core::Tensor& y) override;
  void sum_all(const core::Tensor& x, double scale, bool accumulate, core::Tensor& y) override;
  void broadcast_axis(const core::Tensor& dy, int axis, double scale, core::Tensor& dx) override;

  void logsumexp(const core::Tensor& x, core::Tensor& y) override;
  void logsumexp_backward(const core::Tensor& x, const core::Tensor& y, const core::Tensor& dy,
                          core::Tensor& dx) override;
  void softmax(const core::Tensor& x, bool log, core::Tensor& y) override;
  void softmax_backward(const core::Tensor& y, const core::Tensor& dy, bool log,
                        core::Tensor& dx) override;
  void layer_norm(const core::Tensor& x, const core::Tensor& gamma, const core::Tensor& beta,
                  double eps, core::Tensor& y, core::Tensor& mean, core::Tensor& rstd) override;
  void layer_norm_backward(const core::Tensor& x, const core::Tensor& gamma,
                           const core::Tensor& mean, const core::Tensor& rstd,
                           const core::Tensor& dy, core::Tensor* dx, core::Tensor* dgamma,
                           core::Tensor* dbeta) override;

  void mean_pool(const core::Tensor& x, std::span<const std::int64_t> lengths,
                 core::Tensor& y) override;
  void mean_pool_backward(const core::Tensor& dy, std::span<const std::int64_t> lengths,
                          core::Tensor& dx) override;

  void copy_axis(const core::Tensor& src, int axis, std::int64_t src_begin, core::Tensor& dst,
                 std::int64_t dst_begin, std::int64_t len, bool accumulate) override;
  void gather_rows(const core::Tensor& x, std::span<const std::int64_t> index,
                   core::Tensor& y) override;
  void scatter_add_rows(const core::Tensor& dy, std::span<const std::int64_t> index,
                        core::Tensor& dx) override;

  void rq_spline(const core::Tensor& x, const core::Tensor& widths, const core::Tensor& heights,
                 const core::Tensor& derivatives, const core::RqSplineParams& p, bool inverse,
                 core::Tensor& y, core::Tensor& log_det) override;
  void rq_spline_backward(const core::Tensor& x, const core::Tensor& widths,
                          const core::Tensor& heights, const core::Tensor& derivatives,
                          const core::RqSplineParams& p, bool inverse, const core::Tensor& dy,
                          const core::Tensor& dlog_det, core::Tensor* dx, core::Tensor* dwidths,
                          core::Tensor* dheights, core::Tensor* dderivatives) override;

  void linear_epilogue(const core::Tensor& bias, core::Unary f, core::UnaryParams p,
                       const core::Tensor& residual, core::Tensor& z, core::Tensor& y) override;
  void linear_epilogue_backward(core::Unary f, core::UnaryParams p, const core::Tensor& z,
                                const core::Tensor& fz, const core::Tensor& dy, core::Tensor& dz,
                                core::Tensor* dbias) override;

  // One launch each way for float32 networks no wider than core::fused_mlp_max_width
  // (cuda/fused_mlp.cu); otherwise core::Backend's layer-by-layer cuBLAS + epilogue path.
  void fused_mlp_forward(const core::Tensor& x, const core::Tensor& parameters,
                         std::span<const std::int64_t> widths, core::Unary f, core::UnaryParams p,
                         core::Tensor& y, core::Tensor* hidden) override;
  void fused_mlp_backward(const core::Tensor& x, const core::Tensor& parameters,
                          std::span<const std::int64_t> widths, core::Unary f,
                          core::UnaryParams p, const core::Tensor& hidden,
                          const core::Tensor& dy, core::Tensor* dx,
                          core::Tensor* dparameters) override;

  void adam_step(const core::AdamStep& step,
                 std::span<const core::AdamTensors> parameters) override;

  void random_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                      core::Tensor& y) override;
  void random_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                     core::Tensor& y) override;
  void dropout_mask(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                    double drop_probability, double keep_scale, core::Tensor& y) override;

 private:
  cublasHandle_t cublas();  // created on first use

  std::mutex cublas_mutex_;  // a cuBLAS handle must not be used by two threads at once
  cublasHandle_t cublas_ = nullptr;
};

// Throws unless a device is present and every defined tensor lives on it: a host pointer handed
// to a kernel would poison the whole CUDA context instead of failing one call.
void expect_device(const char* op, std::initializer_list<const core::Tensor*> tensors);

// Temporary device memory from the pool, returned to it when this goes out of scope: stream order
// makes that safe right after the launch that reads it.
class Scratch {
 public:
  explicit Scratch(std::size_t bytes);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  void upload(const void* host, std::size_t bytes);  // host → the first `bytes` of this buffer

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace asbi::cuda
