#pragma once
// Var: a value in a computation that may need a gradient, and Node: the tape's record of the op
// that produced it.
//
// A Var is a tensor plus, when a tape is recording and the value depends on a parameter, a pointer
// to its node. A Var without a node is a constant: ops on constants record nothing.
#include <array>
#include <cstdint>
#include <span>

#include "core/tensor.hpp"

namespace asbi::ad {

using core::Shape;
using core::Tensor;

struct Node;

class Var {
 public:
  Var() = default;
  Var(Tensor value, Node* node = nullptr) : value_(std::move(value)), node_(node) {}  // NOLINT

  const Tensor& value() const {
    value_.check_alive();
    return value_;
  }
  Node* node() const { return node_; }
  bool defined() const { return value_.defined(); }
  bool requires_grad() const { return node_ != nullptr; }

  const Shape& shape() const { return value_.shape(); }
  std::int64_t dim(int axis) const { return value_.dim(axis); }
  std::int64_t numel() const { return value_.numel(); }
  core::DType dtype() const { return value_.dtype(); }
  core::Device device() const { return value_.device(); }
  double item() const { return value().item(); }

 private:
  Tensor value_;
  Node* node_ = nullptr;
};

// Propagates a node's gradient to the gradients of its inputs.
using BackwardFn = void (*)(Node&);

// One recorded op. Ops fill it with designated initialisers, the backward rule last:
//   record(y, {.op = "exp", .inputs = {x}, .backward = [](Node& n) { ... }});
struct Node {
  const char* op = "";
  std::array<Var, 3> inputs{};           // an input without a node receives no gradient
  std::array<Tensor, 2> saved{};         // what the backward needs beyond inputs and output
  std::array<double, 2> attr{};          // scalar attributes: slope, exponent, epsilon…
  int axis = 0;
  int variant = 0;                        // which member of a family: a core::Unary, a flag
  std::span<const std::int64_t> index{};  // integers kept in the arena: gather rows, set lengths
  BackwardFn backward = nullptr;

  Tensor value{};  // the op's output
  Tensor grad{};   // ∂loss/∂value, created on first accumulation
  bool persistent = false;  // a Parameter's node: grad is owned and outlives the tape

  // The gradient accumulator of input i, zero-filled on first use; null when that input does not
  // need a gradient. Backward rules add into it.
  Tensor* input_grad(int i);
  const Tensor& input(int i) const { return inputs[static_cast<std::size_t>(i)].value(); }
};

}  // namespace asbi::ad
