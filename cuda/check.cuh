#pragma once
// Error checking for CUDA runtime and cuBLAS calls. Every failure becomes a core::DeviceError that
// names the call, its file:line and the library's own error string, so that a bad launch is
// reported where it happened instead of surfacing as a garbage number many steps later.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/error.hpp"

namespace asbi::cuda {

[[noreturn]] inline void throw_cuda(const char* what, const char* file, int line, const char* why) {
  throw core::DeviceError(
      core::str("cuda backend: ", what, " failed at ", file, ":", line, ": ", why));
}

inline void check(cudaError_t status, const char* what, const char* file, int line) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clear the non-sticky error so that the next call starts clean
  throw_cuda(what, file, line, cudaGetErrorString(status));
}

inline void check(cublasStatus_t status, const char* what, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw_cuda(what, file, line, cublasGetStatusString(status));
}

}  // namespace asbi::cuda

#define ASBI_CUDA_CHECK(call) ::asbi::cuda::check((call), #call, __FILE__, __LINE__)
// After every kernel launch: launches report bad configurations only through cudaGetLastError.
#define ASBI_CUDA_CHECK_LAUNCH(kernel) \
  ::asbi::cuda::check(cudaGetLastError(), "launch of " kernel, __FILE__, __LINE__)
