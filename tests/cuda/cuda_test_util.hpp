#pragma once
// What the CUDA tests share: a fixture that skips without a device and registers the backend
// (these tests link only core and cuda, so nothing else registers it), and the float-tolerance
// comparison of a GPU result with the CPU's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/tensor.hpp"
#include "cuda/cuda_backend.hpp"

namespace asbi::cuda::test_util {

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device: " << unavailable_reason();
    core::register_backend(core::Device::cuda, &backend());
  }
  core::Backend& cpu() { return core::backend(core::Device::cpu); }
  core::Backend& gpu() { return backend(); }
};

inline core::Tensor on_gpu(const core::Tensor& t) { return t.to(core::Device::cuda); }

struct Tolerance {
  double rtol, atol;
};

// Float32 results differ by a few ulps (device libm, fused multiply-adds, summation order).
inline Tolerance tolerance(core::DType dtype) {
  return dtype == core::DType::f32 ? Tolerance{2e-5, 2e-5} : Tolerance{1e-12, 1e-12};
}

// |got - want| <= atol + rtol |want| everywhere; reports the worst element.
inline void expect_close(const core::Tensor& got, const core::Tensor& want, Tolerance tol,
                         const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<double> g = got.to_vector(), w = want.to_vector();
  std::size_t worst = 0;
  double worst_excess = -1;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const bool nan_mismatch = std::isnan(g[i]) != std::isnan(w[i]);
    const double excess =
        nan_mismatch ? 1 : std::abs(g[i] - w[i]) - (tol.atol + tol.rtol * std::abs(w[i]));
    if (excess > worst_excess) {
      worst = i;
      worst_excess = excess;
    }
  }
  EXPECT_LE(worst_excess, 0) << what << ": element " << worst << " is " << g[worst]
                             << " on the GPU and " << w[worst] << " on the CPU";
}

}  // namespace asbi::cuda::test_util
