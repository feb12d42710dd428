#include "autodiff/gradcheck.hpp"

#include <algorithm>
#include <cmath>

#include "autodiff/ops.hpp"
#include "autodiff/parameter.hpp"
#include "autodiff/tape.hpp"

namespace asbi::ad {
namespace {

using core::DType;
using core::Device;

// The fixed weight of output element i (see the header): signs alternate, sizes in [0.5, 1.4].
double weight(std::size_t i) { return (i % 2 ? -1.0 : 1.0) * (0.5 + double(i % 7) / 7); }

// L = Σ w ⊙ y, evaluated on the host for the finite differences.
double weighted_sum(const Var& y) {
  std::vector<double> v = y.value().to_vector();
  double s = 0;
  for (std::size_t i = 0; i < v.size(); ++i) s += v[i] * weight(i);
  return s;
}

Tensor weights_like(const Var& y) {
  std::vector<double> w(static_cast<std::size_t>(y.numel()));
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = weight(i);
  return Tensor::from(w, y.shape(), DType::f64).to(y.device());
}

}  // namespace

std::string GradcheckResult::str() const {
  return core::str(passed ? "passed" : "FAILED", ": max error ", max_error, " at input ", input,
                   " element ", index, " (analytic ", analytic, ", numeric ", numeric, ") over ",
                   entries, " entries");
}

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs, double eps,
                          double tolerance) {
  std::vector<Parameter> params;
  params.reserve(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].dtype() != DType::f64)
      throw core::DtypeError(core::str("gradcheck: input ", i, " is ", inputs[i].dtype(),
                                       "; finite differences need float64"));
    params.emplace_back(core::str("input", i), inputs[i].clone());
  }
  std::vector<Var> vars(params.begin(), params.end());

  // Analytic: one recorded pass and one backward.
  {
    Tape tape;
    Var y = f(vars);
    tape.backward(sum(mul(y, Var(weights_like(y)))));
  }

  // Numeric: perturb each entry in turn, evaluating f without recording.
  GradcheckResult r;
  NoGrad no_grad;
  for (std::size_t i = 0; i < params.size(); ++i) {
    Tensor host = params[i].value().to(Device::cpu);
    double* x = host.data<double>();
    const std::vector<double> analytic = params[i].grad().to_vector();
    for (std::int64_t k = 0; k < host.numel(); ++k) {
      const double saved = x[k];
      auto evaluate = [&](double value) {
        x[k] = value;
        params[i].value().copy_from(host);
        return weighted_sum(f(vars));
      };
      const double numeric = (evaluate(saved + eps) - evaluate(saved - eps)) / (2 * eps);
      x[k] = saved;
      params[i].value().copy_from(host);
      const double a = analytic[static_cast<std::size_t>(k)];
      const double err = std::abs(a - numeric) / std::max({1.0, std::abs(a), std::abs(numeric)});
      ++r.entries;
      if (err > r.max_error || r.input < 0) {
        r.max_error = err;
        r.input = static_cast<int>(i);
        r.index = k;
        r.analytic = a;
        r.numeric = numeric;
      }
    }
  }
  r.passed = r.max_error <= tolerance;
  return r;
}

}  // namespace asbi::ad
