#pragma once
// Tensor: a contiguous block of float32 or float64 numbers on one device, with a shape of up to
// four dimensions. A Tensor is a cheap handle (like a pointer): copying it shares the data, and
// `clone()` makes a deep copy. Views (`rows`, `reshape`) share the data of their parent.
//
//   Tensor x = Tensor::zeros({256, 2});               // owned, counted CPU memory
//   Tensor y = Tensor::wrap(user_ptr, {n, 3});        // a view over memory the caller owns
//   float* p = x.data<float>();                       // checked: throws on a float64 tensor
//   Tensor top = x.rows(0, 128);                      // no copy
//
// Storage comes from one of three places: owned buffers (freed with the last handle), the arena
// of the active ArenaScope (per-step temporaries, see core/memory.hpp), or the caller's memory.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "core/error.hpp"
#include "core/memory.hpp"
#include "core/types.hpp"

namespace asbi::core {

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor; defined() is false

  // Owned, counted storage; `empty` leaves it uninitialised.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = Device::cpu);
  // A temporary: from the arena while an ArenaScope is active on this thread, owned otherwise.
  static Tensor scratch(const Shape& shape, DType dtype, Device device);
  // Copies host values into a new CPU tensor of the given dtype.
  static Tensor from(std::span<const double> values, const Shape& shape, DType dtype = DType::f32);
  static Tensor from(std::initializer_list<double> values, const Shape& shape,
                     DType dtype = DType::f32);
  // A non-owning view over memory the caller keeps alive (no copy). Read-only data may be
  // wrapped too; writing through such a tensor is then the caller's error.
  template <typename T>
  static Tensor wrap(T* data, const Shape& shape, Device device = Device::cpu) {
    return Tensor(const_cast<std::remove_const_t<T>*>(data), shape,
                  dtype_of<std::remove_const_t<T>>(), device, nullptr);
  }

  bool defined() const { return data_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  std::int64_t dim(int axis) const { return shape_[shape_.normalize_axis(axis)]; }
  std::int64_t numel() const { return shape_.numel(); }
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * size_of(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }

  template <typename T>
  T* data() const {
    check_alive();
    if (dtype_of<T>() != dtype_)
      throw DtypeError(str("Tensor::data: asked for ", name(dtype_of<T>()), ", tensor of shape ",
                           shape_, " holds ", name(dtype_)));
    return static_cast<T*>(data_);
  }
  void* raw() const {
    check_alive();
    return data_;
  }

  // Views sharing this tensor's storage.
  Tensor rows(std::int64_t begin, std::int64_t end) const;  // rows [begin, end) of dimension 0
  Tensor reshape(const Shape& shape) const;                  // same numel, same data

  // Copies.
  Tensor clone() const;
  Tensor to(Device device) const;  // this tensor itself when already there
  Tensor to(DType dtype) const;
  void copy_from(const Tensor& src);  // same shape and dtype; any devices

  // Host-side element access, for tests and small results (copies from a device when needed).
  double item() const;  // the single element of a one-element tensor
  double at(std::int64_t flat_index) const;
  std::vector<double> to_vector() const;

  void check_alive() const {
    if (!ArenaScope::alive(stamp_)) throw_stale();
  }

 private:
  Tensor(void* data, const Shape& shape, DType dtype, Device device, std::shared_ptr<void> owner);
  [[noreturn]] void throw_stale() const;

  void* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
  ArenaScope::Stamp stamp_;
  std::shared_ptr<void> owner_;  // null for arena and caller memory
};

// The NumPy broadcast of two shapes (aligned from the right; size-1 dimensions stretch).
Shape broadcast_shapes(const Shape& a, const Shape& b);

// Checks shared by ops: both tensors have the same dtype and device.
void check_compatible(const char* op, const Tensor& a, const Tensor& b);
void check_shape(const char* op, const char* what, const Tensor& t, const Shape& expected);

}  // namespace asbi::core
