#pragma once
// One exception hierarchy for all of asbi. Every message says what was expected and what was
// found, so that a failure deep in a training run can be traced back to the input that caused it.
#include <sstream>
#include <stdexcept>
#include <string>

namespace asbi::core {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class ShapeError : public Error {  // tensor shapes do not fit the operation
 public:
  using Error::Error;
};
class DtypeError : public Error {  // float32 met float64, or an unsupported element type
 public:
  using Error::Error;
};
class DeviceError : public Error {  // tensors on different devices, or a device that is absent
 public:
  using Error::Error;
};
class ValueError : public Error {  // an argument outside its valid range
 public:
  using Error::Error;
};
class IoError : public Error {  // a file that cannot be read or written, or holds bad data
 public:
  using Error::Error;
};
class StateError : public Error {  // an object used out of order (a Var after its tape ended)
 public:
  using Error::Error;
};

// Concatenates anything printable into one string: str("expected ", a, ", got ", b).
template <typename... Parts>
std::string str(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

}  // namespace asbi::core
