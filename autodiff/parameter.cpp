#include "autodiff/parameter.hpp"

#include "autodiff/tape.hpp"
#include "core/backend.hpp"

namespace asbi::ad {

Parameter::Parameter(std::string name, Tensor value)
    : name_(std::move(name)), node_(std::make_unique<Node>()) {
  if (!value.defined()) throw core::ValueError(core::str("Parameter '", name_, "': no value"));
  node_->op = "parameter";
  node_->persistent = true;
  node_->value = std::move(value);
  node_->grad = Tensor::zeros(node_->value.shape(), node_->value.dtype(), node_->value.device());
  node_->backward = [](Node&) {};
}

void Parameter::zero_grad() { kernels(node_->grad).fill(node_->grad, 0.0); }

}  // namespace asbi::ad
