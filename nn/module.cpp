#include "nn/module.hpp"

#include <cmath>

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

Tensor kaiming_uniform(const Shape& shape, std::int64_t fan_in, core::Rng& rng, DType dtype) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(std::max<std::int64_t>(fan_in, 1)));
  std::vector<double> values(static_cast<std::size_t>(shape.numel()));
  for (double& v : values) v = bound * (2.0 * rng.uniform() - 1.0);
  return Tensor::from(values, shape, dtype);
}

}  // namespace asbi::nn
