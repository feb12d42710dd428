// The smallest program built against an installed asbi: the gradient of a scalar function of the
// caller's own array, computed by asbi's tape without copying the array in.
#include <asbi/autodiff/ops.hpp>
#include <asbi/autodiff/parameter.hpp>
#include <asbi/autodiff/tape.hpp>
#include <cstdio>

int main() {
  using namespace asbi;
  double theta[3] = {0.5, -1.0, 2.0};  // memory owned by the host code
  ad::Parameter p("theta", core::Tensor::wrap(theta, {3}));
  ad::Tape tape;
  ad::Var loss = ad::sum(ad::square(ad::tanh(p)));  // Σ tanh(θᵢ)²
  tape.backward(loss);
  std::vector<double> g = p.grad().to_vector();     // 2 tanh(θ) (1 - tanh²(θ))
  std::printf("loss %.6f  grad %.6f %.6f %.6f\n", loss.item(), g[0], g[1], g[2]);
  return 0;
}
