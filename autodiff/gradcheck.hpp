#pragma once
// gradcheck: the tape's gradient against central finite differences, in float64.
//
//   auto r = ad::gradcheck([](std::span<const ad::Var> v) { return ad::tanh(v[0]) * v[1]; },
//                          {x, y});          // float64 CPU tensors
//   EXPECT_TRUE(r.passed) << r.str();
//
// f may return any shape: the check differentiates L = Σ w ⊙ f(inputs) with fixed weights w
// spread over [0.5, 1.5] with alternating signs, so every output element and every input element
// is exercised. The error of one entry is |analytic - numeric| / max(1, |analytic|, |numeric|):
// relative for large gradients, absolute near zero where a relative error means nothing.
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "autodiff/var.hpp"

namespace asbi::ad {

struct GradcheckResult {
  bool passed = false;
  double max_error = 0;   // largest entry error (see above)
  int input = -1;         // where it occurred
  std::int64_t index = -1;
  double analytic = 0, numeric = 0;
  std::int64_t entries = 0;  // gradient entries compared
  std::string str() const;
};

using GradcheckFn = std::function<Var(std::span<const Var>)>;

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs,
                          double eps = 1e-6, double tolerance = 1e-6);

}  // namespace asbi::ad
