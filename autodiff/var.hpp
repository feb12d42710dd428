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
  Var(Tensor value, Node* node = nullptr);  // NOLINT: a tensor is a constant Var

  const Tensor& value() const {
    check_alive();
    return value_;
  }
  Node* node() const {
    check_alive();
    return node_;
  }
  bool defined() const { return value_.defined(); }
  bool requires_grad() const { return node() != nullptr; }

  const Shape& shape() const { return value_.shape(); }
  std::int64_t dim(int axis) const { return value_.dim(axis); }
  std::int64_t numel() const { return value_.numel(); }
  core::DType dtype() const { return value_.dtype(); }
  core::Device device() const { return value_.device(); }
  double item() const { return value().item(); }

 private:
  // The value's own stamp is not enough: a view (reshape of a parameter) has owned, never-stale
  // storage while its node lives in the arena of the tape that recorded it.
  void check_alive() const {
    value_.check_alive();
    if (!core::ArenaScope::alive(node_stamp_))
      throw core::StateError(core::str("a Var of shape ", value_.shape(),
                                       " was used after the tape that recorded it ended or was "
                                       "reset; clone() its value() to keep it"));
  }

  Tensor value_;
  Node* node_ = nullptr;
  core::ArenaScope::Stamp node_stamp_;  // the tape's scope for a recorded node, else "always"
};

// Propagates a node's gradient to the gradients of its inputs.
using BackwardFn = void (*)(Node&);

// One recorded op. Ops fill it with designated initialisers, the backward rule last:
//   record(y, {.op = "exp", .inputs = {x}, .backward = [](Node& n) { ... }});
struct Node {
  const char* op = "";
  std::array<Var, 4> inputs{};           // an input without a node receives no gradient
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

// A recorded node lives as long as the tape's arena scope; a parameter's node lives forever.
inline Var::Var(Tensor value, Node* node)
    : value_(std::move(value)),
      node_(node),
      node_stamp_(node && !node->persistent ? core::ArenaScope::stamp()
                                            : core::ArenaScope::Stamp{}) {}

}  // namespace asbi::ad
