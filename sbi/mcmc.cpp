// Replaced by the sampler implementation (in progress in a parallel branch).
#include "sbi/mcmc.hpp"

#include "core/error.hpp"

namespace asbi::sbi {
const char* name(SamplerKind kind) {
  return kind == SamplerKind::slice ? "slice" : kind == SamplerKind::mh ? "mh" : "hmc";
}
SamplerKind sampler_from_name(const std::string& name) {
  if (name == "slice") return SamplerKind::slice;
  if (name == "mh") return SamplerKind::mh;
  if (name == "hmc") return SamplerKind::hmc;
  throw core::ValueError("unknown sampler '" + name + "'; expected one of slice, mh, hmc");
}
}  // namespace asbi::sbi
