#include "core/tensor.hpp"

#include <algorithm>
#include <cstring>

#include "core/backend.hpp"

namespace asbi::core {

Tensor::Tensor(void* data, const Shape& shape, DType dtype, Device device,
               std::shared_ptr<void> owner)
    : data_(data), shape_(shape), dtype_(dtype), device_(device), owner_(std::move(owner)) {}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  std::size_t bytes = static_cast<std::size_t>(shape.numel()) * size_of(dtype);
  void* data = core::allocate(bytes, device);
  std::shared_ptr<void> owner(data, [bytes, device](void* p) { deallocate(p, bytes, device); });
  return Tensor(data, shape, dtype, device, std::move(owner));
}

Tensor Tensor::scratch(const Shape& shape, DType dtype, Device device) {
  if (!ArenaScope::active()) return empty(shape, dtype, device);
  std::size_t bytes = static_cast<std::size_t>(shape.numel()) * size_of(dtype);
  Tensor t(thread_arena(device).allocate(bytes), shape, dtype, device, nullptr);
  t.stamp_ = ArenaScope::stamp();
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  backend(device).fill(t, value);
  return t;
}

Tensor Tensor::from(std::span<const double> values, const Shape& shape, DType dtype) {
  if (static_cast<std::int64_t>(values.size()) != shape.numel())
    throw ShapeError(str("Tensor::from: shape ", shape, " needs ", shape.numel(), " values, got ",
                         values.size()));
  Tensor t = empty(shape, dtype);
  if (values.empty()) return t;  // memcpy from an empty span's null pointer is undefined
  if (dtype == DType::f64) {
    std::memcpy(t.data_, values.data(), values.size() * sizeof(double));
  } else {
    float* out = static_cast<float*>(t.data_);
    for (std::size_t i = 0; i < values.size(); ++i) out[i] = static_cast<float>(values[i]);
  }
  return t;
}

Tensor Tensor::from(std::initializer_list<double> values, const Shape& shape, DType dtype) {
  return from(std::span<const double>(values.begin(), values.size()), shape, dtype);
}

Tensor Tensor::rows(std::int64_t begin, std::int64_t end) const {
  if (rank() == 0 || begin < 0 || end < begin || end > shape_[0])
    throw ShapeError(str("Tensor::rows: range [", begin, ", ", end,
                         ") is outside the rows of a tensor of shape ", shape_));
  Tensor view = *this;
  view.shape_[0] = end - begin;
  view.data_ = static_cast<char*>(data_) +
               static_cast<std::size_t>(begin * shape_.cols()) * size_of(dtype_);
  return view;
}

Tensor Tensor::reshape(const Shape& shape) const {
  if (shape.numel() != numel())
    throw ShapeError(str("Tensor::reshape: cannot view ", shape_, " (", numel(),
                         " elements) as ", shape, " (", shape.numel(), " elements)"));
  Tensor view = *this;
  view.shape_ = shape;
  return view;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device_);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == device_) return *this;
  Tensor t = empty(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor t = empty(shape_, dtype, device_);
  backend(device_).cast(*this, t);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  if (src.shape_ != shape_ || src.dtype_ != dtype_)
    throw ShapeError(str("Tensor::copy_from: destination is ", shape_, " ", dtype_,
                         ", source is ", src.shape_, " ", src.dtype_));
  Device via = device_ == Device::cpu ? src.device_ : device_;
  backend(via).copy_bytes(raw(), device_, src.raw(), src.device_, bytes());
}

std::vector<double> Tensor::to_vector() const {
  Tensor host = to(Device::cpu);
  std::vector<double> out(static_cast<std::size_t>(numel()));
  if (out.empty()) return out;
  if (dtype_ == DType::f64) {
    std::memcpy(out.data(), host.raw(), bytes());
  } else {
    const float* p = host.data<float>();
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = p[i];
  }
  return out;
}

double Tensor::at(std::int64_t flat_index) const {
  if (flat_index < 0 || flat_index >= numel())
    throw ShapeError(str("Tensor::at: index ", flat_index, " is outside a tensor of shape ",
                         shape_));
  std::size_t offset = static_cast<std::size_t>(flat_index) * size_of(dtype_);
  const char* src = static_cast<const char*>(raw()) + offset;
  if (dtype_ == DType::f64) {
    double v;
    backend(device_).copy_bytes(&v, Device::cpu, src, device_, sizeof v);
    return v;
  }
  float v;
  backend(device_).copy_bytes(&v, Device::cpu, src, device_, sizeof v);
  return v;
}

double Tensor::item() const {
  if (numel() != 1)
    throw ShapeError(str("Tensor::item: expected a tensor with one element, got shape ", shape_));
  return at(0);
}

void Tensor::throw_stale() const {
  throw StateError(str("a temporary tensor of shape ", shape_,
                       " was used after its step ended (its tape or ArenaScope was reset); "
                       "clone() what you need to keep"));
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const int rank = std::max(a.rank(), b.rank());
  Shape out;
  for (int i = 0; i < rank; ++i) {
    const int ia = a.rank() - rank + i, ib = b.rank() - rank + i;
    const std::int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1)
      throw ShapeError(str("cannot broadcast shapes ", a, " and ", b, ": dimension ", i,
                           " is ", da, " vs ", db));
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

void check_compatible(const char* op, const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined())
    throw ValueError(str(op, ": an input tensor is undefined"));
  if (a.dtype() != b.dtype())
    throw DtypeError(str(op, ": inputs must share a dtype, got ", a.dtype(), " ", a.shape(),
                         " and ", b.dtype(), " ", b.shape()));
  if (a.device() != b.device())
    throw DeviceError(str(op, ": inputs must be on one device, got ", a.device(), " and ",
                          b.device()));
}

void check_shape(const char* op, const char* what, const Tensor& t, const Shape& expected) {
  if (t.shape() != expected)
    throw ShapeError(str(op, ": expected ", what, " of shape ", expected, ", got ", t.shape()));
}

}  // namespace asbi::core
