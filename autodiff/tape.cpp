#include "autodiff/tape.hpp"

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <new>
#include <sstream>
#include <vector>

#include "core/backend.hpp"
#include "core/error.hpp"

#if defined(ASBI_WITH_CUDA)
#include "cuda/cuda_backend.hpp"
#endif

namespace asbi::ad {
namespace {

using core::Device;
using core::StateError;
using core::str;

thread_local Tape* current_tape = nullptr;
thread_local int no_grad_depth = 0;
// The recorded nodes, in execution order. Kept across tapes so its capacity is reused.
thread_local std::vector<Node*> nodes;

#if defined(ASBI_WITH_CUDA)
// The CUDA backend plugs in under autodiff: any program that records ops can run them on CUDA.
const bool cuda_registered = [] {
  core::register_backend(Device::cuda, &cuda::backend());
  return true;
}();
#endif

// ASBI_DEBUG=1 prints every tape before its backward pass.
int debug_level() {
  static const int level = [] {
    const char* v = std::getenv("ASBI_DEBUG");
    return v ? std::atoi(v) : 0;
  }();
  return level;
}

}  // namespace

Tensor* Node::input_grad(int i) {
  Node* in = inputs[static_cast<std::size_t>(i)].node();
  if (!in) return nullptr;
  if (!in->grad.defined()) {
    in->grad = Tensor::scratch(in->value.shape(), in->value.dtype(), in->value.device());
    kernels(in->value).fill(in->grad, 0.0);
  }
  return &in->grad;
}

Tape::Tape() {
  if (current_tape)
    throw StateError("Tape: a tape is already recording on this thread; end it (or reset() it) "
                     "before starting another");
  current_tape = this;
  nodes.clear();
}

Tape::~Tape() {
  for (Node* n : nodes) n->~Node();
  nodes.clear();
  current_tape = nullptr;
}

void Tape::reset() {
  for (Node* n : nodes) n->~Node();
  nodes.clear();
  scope_.rewind();
  backward_done_ = false;
}

std::size_t Tape::size() const { return nodes.size(); }

Tape* Tape::current() { return current_tape; }

void Tape::backward(const Var& loss) {
  if (backward_done_)
    throw StateError("Tape::backward: already called for this recording; reset() the tape and "
                     "record the step again");
  if (loss.numel() != 1)
    throw core::ShapeError(core::str("Tape::backward: the loss must have one element, got shape ",
                               loss.shape()));
  if (!loss.node())
    throw StateError("Tape::backward: the loss depends on no parameter (nothing was recorded: "
                     "was it computed under NoGrad, or before the tape started?)");
  if (debug_level() > 0) std::cerr << "asbi: backward through tape\n" << str();

  // ∂loss/∂loss = 1, added through a one-input pseudo-node so that a parameter used directly as
  // the loss accumulates like any other.
  Node seed{.inputs = {loss}};
  Tensor one = Tensor::scratch(loss.shape(), loss.dtype(), loss.device());
  kernels(one).fill(one, 1.0);
  kernels(one).axpy(1.0, one, *seed.input_grad(0));

  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    Node& n = **it;
    if (n.grad.defined()) n.backward(n);
  }
  backward_done_ = true;
}

std::string Tape::str() const {
  std::ostringstream out;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = *nodes[i];
    out << "  %" << i << " = " << n.op << n.value.shape() << "(";
    for (std::size_t k = 0; k < n.inputs.size() && n.inputs[k].defined(); ++k) {
      if (k) out << ", ";
      out << (n.inputs[k].node() ? "" : "const") << n.inputs[k].shape();
    }
    out << ")\n";
  }
  return out.str();
}

NoGrad::NoGrad() { ++no_grad_depth; }
NoGrad::~NoGrad() { --no_grad_depth; }

bool recording() { return current_tape != nullptr && no_grad_depth == 0; }

Var record(Tensor value, Node&& spec) {
  if (!recording()) return Var(std::move(value));
  bool needs_grad = false;
  for (const Var& in : spec.inputs) needs_grad = needs_grad || in.requires_grad();
  if (!needs_grad) return Var(std::move(value));
  // A node made inside a nested ArenaScope would be freed when that scope ends, before backward.
  if (core::ArenaScope::current_depth() != current_tape->scope_depth())
    throw StateError(str("record: '", spec.op, "' was recorded inside an ArenaScope nested in the "
                         "tape; its memory would be freed before backward. Open ArenaScopes "
                         "only under NoGrad while a tape records"));
  void* mem = core::thread_arena(Device::cpu).allocate(sizeof(Node));
  Node* node = new (mem) Node(std::move(spec));
  node->value = value;
  nodes.push_back(node);
  return Var(std::move(value), node);
}

std::span<const std::int64_t> keep(std::span<const std::int64_t> values) {
  if (!recording()) return values;  // nothing recorded: the caller's span outlives the op
  void* mem = core::thread_arena(Device::cpu).allocate(values.size_bytes());
  std::memcpy(mem, values.data(), values.size_bytes());
  return {static_cast<const std::int64_t*>(mem), values.size()};
}

core::Backend& kernels(const Tensor& t) { return core::backend(t.device()); }

}  // namespace asbi::ad
