#include "core/types.hpp"

#include <ostream>

#include "core/error.hpp"

namespace asbi::core {

const char* name(DType t) { return t == DType::f32 ? "float32" : "float64"; }
const char* name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

Shape::Shape(std::initializer_list<std::int64_t> dims) {
  for (auto d : dims) push_back(d);
}

void Shape::push_back(std::int64_t d) {
  if (rank_ == max_rank)
    throw ShapeError(core::str("Shape: at most ", max_rank, " dimensions are supported, got more"));
  if (d < 0) throw ShapeError(core::str("Shape: dimensions must be >= 0, got ", d));
  dims_[static_cast<std::size_t>(rank_++)] = d;
}

std::int64_t Shape::numel() const {
  std::int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
  return n;
}

std::int64_t Shape::outer(int axis) const {
  std::int64_t n = 1;
  for (int i = 0; i < axis; ++i) n *= (*this)[i];
  return n;
}

std::int64_t Shape::inner(int axis) const {
  std::int64_t n = 1;
  for (int i = axis + 1; i < rank_; ++i) n *= (*this)[i];
  return n;
}

Shape Shape::with(int axis, std::int64_t d) const {
  Shape s = *this;
  s[normalize_axis(axis)] = d;
  return s;
}

int Shape::normalize_axis(int axis) const {
  int a = axis < 0 ? axis + rank_ : axis;
  if (a < 0 || a >= rank_)
    throw ShapeError(core::str("axis ", axis, " is out of range for a tensor of shape ", *this));
  return a;
}

bool Shape::operator==(const Shape& o) const {
  if (rank_ != o.rank_) return false;
  for (int i = 0; i < rank_; ++i)
    if ((*this)[i] != o[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) {
    if (i) s += ", ";
    s += std::to_string((*this)[i]);
  }
  return s + "]";
}

std::ostream& operator<<(std::ostream& out, const Shape& s) { return out << s.str(); }
std::ostream& operator<<(std::ostream& out, DType t) { return out << name(t); }
std::ostream& operator<<(std::ostream& out, Device d) { return out << name(d); }

}  // namespace asbi::core
