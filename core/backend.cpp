#include "core/backend.hpp"

#include "core/cpu/cpu_backend.hpp"
#include "core/error.hpp"

namespace asbi::core {
namespace {
Backend* registry[2] = {nullptr, nullptr};
}

const char* name(Unary op) {
  static const char* names[] = {"neg",  "relu",     "leaky_relu", "elu", "silu", "gelu",
                                "tanh", "sigmoid",  "softplus",   "exp", "log",  "log1p",
                                "square", "sqrt",   "abs",        "pow", "clamp", "identity"};
  return names[static_cast<int>(op)];
}

const char* name(Binary op) {
  static const char* names[] = {"add", "sub", "mul", "div"};
  return names[static_cast<int>(op)];
}

Backend& backend(Device device) {
  if (device == Device::cpu) return cpu::backend();
  Backend* b = registry[static_cast<int>(device)];
  if (!b)
    throw DeviceError(str("device '", name(device),
                          "' is not available: asbi was built without CUDA (configure with "
                          "-DASBI_CUDA=ON on a machine with nvcc) or the program does not link "
                          "asbi::cuda"));
  return *b;
}

void register_backend(Device device, Backend* impl) { registry[static_cast<int>(device)] = impl; }

bool device_available(Device device) {
  if (device == Device::cpu) return true;
  Backend* b = registry[static_cast<int>(device)];
  return b != nullptr && b->available();
}

}  // namespace asbi::core
