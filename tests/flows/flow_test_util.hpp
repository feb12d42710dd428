#pragma once
// Helpers shared by the flow tests.
#include <cstdint>
#include <vector>

#include "core/rng.hpp"
#include "nn/module.hpp"

namespace asbi::flows::test_util {

// Adds N(0, scale²) to every parameter (drawn from its own Philox stream), to move a flow away
// from its near-identity initialisation.
inline void perturb(nn::Module& m, double scale, std::uint64_t seed) {
  core::Rng rng(seed, 99);
  for (const nn::NamedParameter& p : m.parameters()) {
    core::Tensor& v = p.parameter->value();
    std::vector<double> x = v.to_vector();
    for (double& e : x) e += scale * rng.normal();
    v.copy_from(core::Tensor::from(x, v.shape(), v.dtype()));
  }
}

inline core::Tensor normal_tensor(const core::Shape& shape, double scale, core::DType dtype,
                                  std::uint64_t seed) {
  core::Rng rng(seed, 5);
  std::vector<double> v(static_cast<std::size_t>(shape.numel()));
  for (double& e : v) e = scale * rng.normal();
  return core::Tensor::from(v, shape, dtype);
}

}  // namespace asbi::flows::test_util
