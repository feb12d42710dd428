#pragma once
// z-scoring: the fixed affine map z = (x - μ) / σ, with μ and σ the per-column mean and standard
// deviation of a training set (sbi's standardizing_net). Networks see inputs of order one; a
// flow trained on z-scored θ adds log_abs_det() to its log-density to give the density of θ.
//
//   nn::Standardizer z = nn::Standardizer::fit(theta_train);   // [N, D]
//   ad::Var theta_z = z.apply(theta);                           // differentiable in θ
//   double jac = z.log_abs_det();                               // log |∂z/∂θ| = -Σ log σ
//   core::Tensor back = z.inverse(samples_z);                   // σ z + μ
//
// μ and σ are named tensors ("mean", "std", each [D]) so that a checkpoint stores them and a
// loaded model standardizes exactly as the trained one did.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.hpp"

namespace asbi::nn {

class Standardizer {
 public:
  // sbi's floor for the standard deviation of a (nearly) constant column.
  static constexpr double default_min_std = 1e-14;

  // μ and the unbiased σ (N - 1 in the denominator, like torch.std) of each column of data [N, D],
  // σ floored at min_std. Throws on fewer than 2 rows, no columns, or a non-finite entry (named
  // by row and column). μ and σ keep the data's dtype and device.
  static Standardizer fit(const Tensor& data, double min_std = default_min_std);
  // The identity on D features (μ = 0, σ = 1): the shape that stored statistics load into.
  static Standardizer identity(std::int64_t features, DType dtype = DType::f32,
                               Device device = Device::cpu);
  // From stored statistics, both [D] with one dtype and σ > 0; copies them.
  Standardizer(const Tensor& mean, const Tensor& std_dev);

  // z = (x - μ) / σ for x [..., D];  ∂z/∂x = 1/σ (recorded by ad::sub and ad::div).
  Var apply(const Var& x) const;
  Var operator()(const Var& x) const { return apply(x); }
  // x = σ z + μ for z [..., D], into a new owned tensor.
  Tensor inverse(const Tensor& z) const;
  // log |det ∂z/∂x| = -Σ_d log σ_d, per sample.
  double log_abs_det() const;

  std::int64_t features() const { return mean_.numel(); }
  const Tensor& mean() const { return mean_; }
  const Tensor& std() const { return std_; }
  // "mean" and "std": loading a checkpoint copies into them in place.
  std::vector<std::pair<std::string, Tensor*>> state() {
    return {{"mean", &mean_}, {"std", &std_}};
  }

 private:
  void check_input(const char* who, const Tensor& x) const;

  Tensor mean_;  // [D]
  Tensor std_;   // [D]
};

}  // namespace asbi::nn
