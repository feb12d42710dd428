#pragma once
// A trainable tensor with a gradient that outlives tapes. Using a Parameter in an op (it converts
// to a Var) makes the tape accumulate ∂loss/∂value into grad() during backward.
#include <memory>
#include <string>

#include "autodiff/var.hpp"

namespace asbi::ad {

class Parameter {
 public:
  Parameter(std::string name, Tensor value);

  Var var() const { return Var(node_->value, node_.get()); }
  operator Var() const { return var(); }  // NOLINT: a parameter is used wherever a Var is

  const std::string& name() const { return name_; }
  Tensor& value() { return node_->value; }
  const Tensor& value() const { return node_->value; }
  Tensor& grad() { return node_->grad; }
  const Tensor& grad() const { return node_->grad; }
  void zero_grad();

 private:
  std::string name_;
  std::unique_ptr<Node> node_;  // a stable address for the Vars that point at it
};

}  // namespace asbi::ad
