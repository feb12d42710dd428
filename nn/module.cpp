#include "nn/module.hpp"

#include <cmath>

#include "autodiff/tape.hpp"
#include "core/backend.hpp"

namespace asbi::nn {

std::vector<NamedParameter> Module::parameters() const {
  std::vector<NamedParameter> out;
  collect("", out);
  return out;
}

void Module::collect(const std::string& prefix, std::vector<NamedParameter>& out) const {
  for (const auto& [name, p] : params_) out.push_back({prefix + name, p.get()});
  for (const auto& [name, m] : children_) m->collect(prefix + name + ".", out);
}

std::vector<NamedBuffer> Module::registered_buffers() const {
  std::vector<NamedBuffer> out;
  collect("", out);
  return out;
}

void Module::collect(const std::string& prefix, std::vector<NamedBuffer>& out) const {
  for (const NamedBuffer& b : buffers_) out.push_back({prefix + b.name, b.tensor});
  for (const auto& [name, m] : children_) m->collect(prefix + name + ".", out);
}

Device Module::device() const {
  std::string first_name;
  Device first = Device::cpu;
  const auto visit = [&](const std::string& name, const Tensor& t) {
    if (!t.defined()) return;
    if (first_name.empty()) {
      first_name = name;
      first = t.device();
    } else if (t.device() != first) {
      throw core::DeviceError(core::str("module: '", first_name, "' is on ", first, " but '", name,
                                        "' is on ", t.device(),
                                        "; call to(device) to put the "
                                        "whole module on one device"));
    }
  };
  for (const NamedParameter& p : parameters()) visit(p.name, p.parameter->value());
  for (const NamedBuffer& b : registered_buffers()) visit(b.name, *b.tensor);
  return first;
}

void Module::to(Device device) {
  if (ad::recording())
    throw core::StateError(
        "module: to() while a tape records; the recorded nodes would keep "
        "pointing at the old tensors. Move the module before or after the step");
  if (!core::device_available(device))
    throw core::DeviceError(
        core::str("module: cannot move to ", device, ": ", device_unavailable_reason(device)));
  for (const NamedParameter& p : parameters()) {
    Parameter& param = *p.parameter;
    param.value() = param.value().to(device);
    param.grad() = param.grad().to(device);
  }
  for (const NamedBuffer& b : registered_buffers())
    if (b.tensor->defined()) *b.tensor = b.tensor->to(device);
}

Parameter& Module::parameter(const std::string& name) const {
  std::string known;
  for (const NamedParameter& p : parameters()) {
    if (p.name == name) return *p.parameter;
    known += (known.empty() ? "" : ", ") + p.name;
  }
  throw core::ValueError(core::str("no parameter named '", name, "'; this module has: ", known));
}

std::int64_t Module::parameter_count() const {
  std::int64_t n = 0;
  for (const NamedParameter& p : parameters()) n += p.parameter->value().numel();
  return n;
}

void Module::zero_grad() {
  for (const NamedParameter& p : parameters()) p.parameter->zero_grad();
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, m] : children_) m->train(on);
}

Parameter& Module::param(std::string name, Tensor value) {
  params_.push_back({name, std::make_unique<Parameter>(name, std::move(value))});
  return *params_.back().second;
}

std::string device_unavailable_reason(Device device) {
  if (core::device_available(device)) return "";
  try {
    return core::backend(device).description();
  } catch (const core::Error& e) {
    return e.what();
  }
}

void Module::register_buffer(std::string name, Tensor& tensor) {
  buffers_.push_back({std::move(name), &tensor});
}

Tensor kaiming_uniform(const Shape& shape, std::int64_t fan_in, core::Rng& rng, DType dtype) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(std::max<std::int64_t>(fan_in, 1)));
  std::vector<double> values(static_cast<std::size_t>(shape.numel()));
  for (double& v : values) v = bound * (2.0 * rng.uniform() - 1.0);
  return Tensor::from(values, shape, dtype);
}

}  // namespace asbi::nn
