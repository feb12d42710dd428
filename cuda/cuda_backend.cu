// The CUDA backend's host side: device discovery, memory and copies, and cuBLAS matrix products.
// The kernels live in the other .cu files of this directory.
#include <cstring>
#include <string>

#include "cuda/backend_impl.cuh"
#include "cuda/cuda_backend.hpp"
#include "cuda/device_pool.hpp"
#include "cuda/host_staging.hpp"

namespace asbi::cuda {
namespace {

struct Probe {
  int count = 0;
  std::string reason;
};

// Asked once, on first use: a driver query at static-init time would run before main on machines
// that never use the GPU, and could fail there.
const Probe& probe() {
  static const Probe result = [] {
    Probe p;
    const cudaError_t status = cudaGetDeviceCount(&p.count);
    if (status != cudaSuccess) {
      cudaGetLastError();
      p.count = 0;
      p.reason = cudaGetErrorString(status);
    } else if (p.count == 0) {
      p.reason = "the CUDA runtime sees no device";
    }
    return p;
  }();
  return result;
}

void expect_present(const char* op) {
  if (probe().count == 0)
    throw core::DeviceError(core::str("cuda backend: ", op,
                                      " needs a CUDA device, but there is "
                                      "none (",
                                      probe().reason, "); run on the CPU instead"));
}

}  // namespace

int device_count() {
  try {
    return probe().count;
  } catch (...) {  // only std::bad_alloc could get here; a missing device is the honest answer
    return 0;
  }
}

std::string unavailable_reason() { return probe().reason; }

// Never destroyed, like the pool: tensors held in static storage are freed after function-local
// statics are destroyed, and must still find a live backend then.
core::Backend& backend() {
  static CudaBackend* instance = new CudaBackend;
  return *instance;
}

void expect_device(const char* op, std::initializer_list<const core::Tensor*> tensors) {
  expect_present(op);
  for (const core::Tensor* t : tensors)
    if (t && t->defined() && t->device() != core::Device::cuda)
      throw core::DeviceError(core::str("cuda backend: ", op, " got a tensor of shape ", t->shape(),
                                        " on ", t->device(), "; every tensor must be on cuda"));
}

Scratch::Scratch(std::size_t bytes) : bytes_(bytes) {
  if (bytes_ > 0) data_ = device_pool().allocate(bytes_);
}

Scratch::~Scratch() {
  if (data_) device_pool().deallocate(data_, bytes_);
}

void Scratch::upload(const void* host, std::size_t bytes) {
  if (bytes > bytes_)
    throw core::ValueError(core::str("cuda backend: upload of ", bytes,
                                     " bytes into a scratch "
                                     "buffer of ",
                                     bytes_));
  host_staging().upload(data_, host, bytes);
}

// --- device and memory ----------------------------------------------------------------------

bool CudaBackend::available() const { return device_count() > 0; }

std::string CudaBackend::description() const {
  if (device_count() == 0) return core::str("CUDA: no device (", unavailable_reason(), ")");
  int device = 0, driver = 0, runtime = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaGetDeviceProperties(&prop, device) != cudaSuccess ||
      cudaDriverGetVersion(&driver) != cudaSuccess ||
      cudaRuntimeGetVersion(&runtime) != cudaSuccess) {
    const cudaError_t status = cudaGetLastError();
    return core::str("CUDA device ", device, ": properties unavailable (",
                     cudaGetErrorString(status), ")");
  }
  return core::str(prop.name, " (sm_", prop.major, prop.minor, ", ", prop.multiProcessorCount,
                   " SMs, ", prop.totalGlobalMem >> 20, " MiB), driver ", driver / 1000, ".",
                   driver % 1000 / 10, ", runtime ", runtime / 1000, ".", runtime % 1000 / 10);
}

void* CudaBackend::allocate(std::size_t bytes) {
  expect_present("allocate");
  return device_pool().allocate(bytes);
}

void CudaBackend::deallocate(void* ptr, std::size_t bytes) { device_pool().deallocate(ptr, bytes); }

void CudaBackend::copy_bytes(void* dst, core::Device dst_device, const void* src,
                             core::Device src_device, std::size_t bytes) {
  using core::Device;
  if (bytes == 0) return;
  if (dst_device == Device::cpu && src_device == Device::cpu) {
    std::memmove(dst, src, bytes);
    return;
  }
  expect_present("copy_bytes");
  if (src_device == Device::cpu)
    host_staging().upload(dst, src, bytes);
  else if (dst_device == Device::cpu)
    host_staging().download(dst, src, bytes);
  else
    ASBI_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0));
}

void CudaBackend::synchronize() {
  if (device_count() == 0) return;
  ASBI_CUDA_CHECK(cudaDeviceSynchronize());
}

// --- matrix products ------------------------------------------------------------------------

cublasHandle_t CudaBackend::cublas() {
  // The handle is never destroyed: at exit the driver may be gone before static destructors run.
  if (!cublas_) {
    ASBI_CUDA_CHECK(cublasCreate(&cublas_));
    // Full FP32 products: TF32 would make float32 results differ from the CPU by ~1e-3.
    ASBI_CUDA_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
    ASBI_CUDA_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST));
  }
  return cublas_;
}

namespace {

cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                         std::int64_t m, std::int64_t n, std::int64_t k, const float* alpha,
                         const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                         const float* beta, float* c, std::int64_t ldc) {
  return cublasSgemm_64(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                         std::int64_t m, std::int64_t n, std::int64_t k, const double* alpha,
                         const double* a, std::int64_t lda, const double* b, std::int64_t ldb,
                         const double* beta, double* c, std::int64_t ldc) {
  return cublasDgemm_64(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace

// cuBLAS is column-major, and a row-major [r × c] buffer read column-major is its transpose.
// So row-major C = op(A) op(B) is computed as column-major Cᵀ = op(B)ᵀ op(A)ᵀ: B comes first,
// each operand keeps its own transpose flag, and the leading dimensions are the row-major
// column counts. With beta = 0 cuBLAS does not read C, which matches the CPU's setZero.
void CudaBackend::gemm(bool trans_a, bool trans_b, double alpha, const core::Tensor& a,
                       const core::Tensor& b, double beta, core::Tensor& c) {
  expect_device("gemm", {&a, &b, &c});
  const std::int64_t m = c.shape().rows(), n = c.shape().cols();
  const std::int64_t a_rows = a.shape().rows(), a_cols = a.shape().cols();
  const std::int64_t b_rows = b.shape().rows(), b_cols = b.shape().cols();
  const std::int64_t k = trans_a ? a_rows : a_cols;
  if ((trans_a ? a_cols : a_rows) != m || (trans_b ? b_cols : b_rows) != k ||
      (trans_b ? b_rows : b_cols) != n)
    throw core::ShapeError(core::str("cuda gemm: op(A) of ", a.shape(), (trans_a ? "ᵀ" : ""),
                                     " times op(B) of ", b.shape(), (trans_b ? "ᵀ" : ""),
                                     " does not give C of ", c.shape()));
  if (m == 0 || n == 0) return;
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  std::lock_guard lock(cublas_mutex_);
  cublasHandle_t handle = cublas();
  with_dtype(c.dtype(), [&]<typename T>() {
    const T al = static_cast<T>(alpha), be = static_cast<T>(beta);
    ASBI_CUDA_CHECK(gemm_call(handle, op_b, op_a, n, m, k, &al, b.data<T>(),
                              std::max<std::int64_t>(b_cols, 1), a.data<T>(),
                              std::max<std::int64_t>(a_cols, 1), &be, c.data<T>(), n));
  });
}

}  // namespace asbi::cuda
