#pragma once
// Marks functions that CUDA kernels call as well as CPU code (scalar math, Philox), so that one
// definition serves both devices.
#if defined(__CUDACC__)
#define ASBI_HOST_DEVICE __host__ __device__
#else
#define ASBI_HOST_DEVICE
#endif
