#pragma once
// Modules: objects that own parameters under stable, dotted names ("net.0.weight"), the names
// checkpoints and optimizers key on. A module registers its own parameters and its sub-modules
// in its constructor; parameters() then lists everything, depth-first, in registration order.
// Tensors a module keeps besides its parameters (a mask, a constant, fitted statistics) are
// registered as buffers, so that to() moves them with the parameters.
//
//   class Affine : public nn::Module {
//    public:
//     Affine(std::int64_t d, core::Rng& rng) : scale_(param("scale", core::Tensor::full({d}, 1))),
//                                             shift_(param("shift", core::Tensor::zeros({d}))) {}
//     ad::Var forward(const ad::Var& x) const { return x * scale_ + shift_; }
//    private:
//     ad::Parameter& scale_;
//     ad::Parameter& shift_;
//   };
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/parameter.hpp"
#include "autodiff/var.hpp"
#include "core/rng.hpp"

namespace asbi::nn {

using ad::Parameter;
using ad::Var;
using core::Device;
using core::DType;
using core::Shape;
using core::Tensor;

struct NamedParameter {
  std::string name;
  Parameter* parameter;
};

struct NamedBuffer {
  std::string name;
  Tensor* tensor;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;  // parameters are registered by address
  Module& operator=(const Module&) = delete;

  std::vector<NamedParameter> parameters() const;
  Parameter& parameter(const std::string& name) const;  // throws ValueError naming the candidates
  std::int64_t parameter_count() const;                 // scalars, for logs
  void zero_grad();
  // The registered buffers of this module and its children, depth-first, dotted names as
  // parameters().
  std::vector<NamedBuffer> registered_buffers() const;

  // The device of every parameter and buffer; the CPU for a module with none. Throws DeviceError
  // naming two tensors that live on different devices.
  Device device() const;
  // Moves every parameter (value and gradient) and every buffer to `device`; a no-op for those
  // already there. Throws DeviceError, before moving anything, when the device is absent.
  // Optimizers hold per-parameter state on the parameters' device: create them after to().
  // StateError while a tape records: recorded nodes point at the old values.
  void to(Device device);

  // Dropout and similar layers behave differently while training; evaluation is the default
  // for inference code that never calls train().
  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }

 protected:
  Parameter& param(std::string name, Tensor value);
  // `tensor` is a member of the module (or of a member), so its address is stable; to() replaces
  // it by its copy on the new device.
  void register_buffer(std::string name, Tensor& tensor);
  template <typename M>
  M& child(std::string name, std::unique_ptr<M> module) {
    M& ref = *module;
    children_.push_back({std::move(name), std::move(module)});
    return ref;
  }

 private:
  void collect(const std::string& prefix, std::vector<NamedParameter>& out) const;
  void collect(const std::string& prefix, std::vector<NamedBuffer>& out) const;

  std::vector<std::pair<std::string, std::unique_ptr<Parameter>>> params_;
  std::vector<NamedBuffer> buffers_;
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
  bool training_ = false;
};

// A module with one input and one output: what sequential stacks and conditioners are made of.
class Layer : public Module {
 public:
  virtual Var forward(const Var& x) const = 0;
  Var operator()(const Var& x) const { return forward(x); }
};

// Why `device` cannot be used, in its backend's words ("CUDA: no device (…)", or that asbi was
// built without it); empty when it can.
std::string device_unavailable_reason(Device device);

// Uniform in ±1/√fan_in: PyTorch's default for nn.Linear (Kaiming-uniform with a = √5) for both
// weights and biases, so asbi's networks start where the Python tools' do.
Tensor kaiming_uniform(const Shape& shape, std::int64_t fan_in, core::Rng& rng,
                       DType dtype = DType::f32);

}  // namespace asbi::nn
