#pragma once
// Optimizers over a module's named parameters. Each keeps its state (moments, step count) as named
// tensors, so that a checkpoint saves it and a resumed run continues exactly.
//
//   auto opt = nn::adam(model.parameters(), {.learning_rate = 5e-4});
//   ... tape.backward(loss);
//   nn::clip_grad_norm(model.parameters(), 5.0);
//   opt->step();
//   opt->zero_grad();
#include <memory>
#include <string>
#include <vector>

#include "nn/module.hpp"

namespace asbi::nn {

class Optimizer {
 public:
  explicit Optimizer(std::vector<NamedParameter> parameters);
  virtual ~Optimizer() = default;

  virtual void step() = 0;
  void zero_grad();

  double learning_rate() const { return learning_rate_; }
  void set_learning_rate(double lr);
  const std::vector<NamedParameter>& parameters() const { return parameters_; }

  // Everything step() depends on besides the parameters, as named tensors: "step" (a 1-element
  // float64 count) and per-parameter buffers such as "exp_avg/<parameter name>". Loading a
  // checkpoint copies into these tensors in place.
  virtual std::vector<std::pair<std::string, Tensor*>> state() = 0;

 protected:
  std::vector<NamedParameter> parameters_;
  double learning_rate_ = 1e-3;
};

struct SgdOptions {
  double learning_rate = 1e-2;
  double momentum = 0.0;
  double weight_decay = 0.0;  // L2 penalty added to the gradient
  bool nesterov = false;
};

struct AdamOptions {
  double learning_rate = 5e-4;  // sbi's default
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // Adam: added to the gradient (L2); AdamW: decoupled decay
};

std::unique_ptr<Optimizer> sgd(std::vector<NamedParameter> parameters, SgdOptions options = {});
std::unique_ptr<Optimizer> adam(std::vector<NamedParameter> parameters, AdamOptions options = {});
std::unique_ptr<Optimizer> adamw(std::vector<NamedParameter> parameters,
                                 AdamOptions options = {.weight_decay = 1e-2});

// Scales all gradients together so that their global L2 norm is at most max_norm; returns the
// norm before clipping (as torch.nn.utils.clip_grad_norm_).
double clip_grad_norm(const std::vector<NamedParameter>& parameters, double max_norm);

}  // namespace asbi::nn
