#pragma once
// The tape: a Wengert list of the ops executed while it records, walked once in reverse by
// backward(). Nodes and every temporary of the step live in this thread's arena, so recording
// allocates nothing from the system once the arena has grown to the size of one step.
//
//   for (int step = 0; step < steps; ++step) {
//     ad::Tape tape;                                 // records ops on this thread
//     ad::Var loss = ad::mean(ad::square(ad::sub(model(x), y)));
//     tape.backward(loss);                           // parameter gradients accumulate
//     optimizer.step();
//   }                                                // the step's memory is rewound here
//
// Gradients of parameters persist across tapes until zero_grad(); every other Var of a tape
// becomes invalid when the tape ends or is reset (using one then throws core::StateError).
#include <cstdint>
#include <string>

#include "autodiff/var.hpp"
#include "core/memory.hpp"

namespace asbi::core {
class Backend;
}

namespace asbi::ad {

class Tape {
 public:
  Tape();
  ~Tape();
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  // Accumulates ∂loss/∂p into the gradient of every parameter p the loss depends on. The loss
  // must have one element. Call once per recording; reset() to record again.
  void backward(const Var& loss);
  // Forgets the recorded ops and rewinds the arena; parameter gradients are kept.
  void reset();

  std::size_t size() const;  // nodes recorded
  std::string str() const;   // one line per node: index, op, output shape, inputs

  static Tape* current();  // the tape recording on this thread, or null
  std::uint32_t scope_depth() const { return scope_.depth(); }

 private:
  core::ArenaScope scope_;
  bool backward_done_ = false;
};

// While a NoGrad lives, ops on this thread record nothing (inference, frozen encoders).
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;
};

// True when an op executed now on this thread would be recorded.
bool recording();

// Appends `spec` as the node producing `value` when recording and some input needs a gradient;
// otherwise returns `value` as a constant.
Var record(Tensor value, Node&& spec);

// Integers copied into the arena, to live exactly as long as the tape's nodes.
std::span<const std::int64_t> keep(std::span<const std::int64_t> values);

// The kernels of the device a tensor lives on.
core::Backend& kernels(const Tensor& t);
inline core::Backend& kernels(const Var& v) { return kernels(v.value()); }
inline core::Backend& kernels(const Node& n) { return kernels(n.value); }

}  // namespace asbi::ad
