#pragma once
// Element types, devices and shapes: the small value types every tensor carries.
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <string>

namespace asbi::core {

enum class DType : std::uint8_t { f32, f64 };
enum class Device : std::uint8_t { cpu, cuda };

constexpr std::size_t size_of(DType t) { return t == DType::f32 ? 4 : 8; }
const char* name(DType t);
const char* name(Device d);

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::f32; }
template <>
constexpr DType dtype_of<double>() { return DType::f64; }

// Up to four dimensions, outermost first; batch × set × features is the common case.
class Shape {
 public:
  static constexpr int max_rank = 4;

  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims);
  template <typename It>
  Shape(It first, It last) {
    for (; first != last; ++first) push_back(*first);
  }

  int rank() const { return rank_; }
  std::int64_t operator[](int axis) const { return dims_[static_cast<std::size_t>(axis)]; }
  std::int64_t& operator[](int axis) { return dims_[static_cast<std::size_t>(axis)]; }
  std::int64_t numel() const;
  // The product of all dimensions but the first: a tensor read as a [rows × cols] matrix.
  std::int64_t rows() const { return rank_ == 0 ? 1 : dims_[0]; }
  std::int64_t cols() const { return inner(0); }
  std::int64_t last() const { return rank_ == 0 ? 1 : dims_[static_cast<std::size_t>(rank_ - 1)]; }
  // Product of the dimensions before / after `axis`: the [outer, n, inner] view used by reductions.
  std::int64_t outer(int axis) const;
  std::int64_t inner(int axis) const;
  void push_back(std::int64_t d);
  Shape with(int axis, std::int64_t d) const;  // the same shape with dimension `axis` replaced
  int normalize_axis(int axis) const;          // maps -1 to rank-1, throws when out of range

  const std::int64_t* begin() const { return dims_.data(); }
  const std::int64_t* end() const { return dims_.data() + rank_; }
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;

 private:
  std::array<std::int64_t, max_rank> dims_{};
  int rank_ = 0;
};

std::ostream& operator<<(std::ostream& out, const Shape& s);
std::ostream& operator<<(std::ostream& out, DType t);
std::ostream& operator<<(std::ostream& out, Device d);

}  // namespace asbi::core
