#pragma once
// The public face of the CUDA backend: plain C++, no CUDA headers, so that code compiled by a host
// compiler (autodiff, tests, programs) can reach the device without nvcc.
//
//   if (asbi::cuda::device_count() > 0)
//     asbi::core::register_backend(asbi::core::Device::cuda, &asbi::cuda::backend());
//
// Nothing touches the driver before the first call: a program built with CUDA still starts on a
// machine without a GPU, and then device_count() is 0 and backend().available() is false.
#include <string>

#include "core/backend.hpp"

namespace asbi::cuda {

// The process-wide CUDA backend (device 0). Kernels on it throw core::DeviceError when no
// device is present.
core::Backend& backend();

// Visible CUDA devices; 0 when there is no GPU, no driver or the driver is too old. Never throws.
int device_count();

// Why device_count() is 0 (the CUDA runtime's own words), or "" when a device is present.
std::string unavailable_reason();

}  // namespace asbi::cuda
