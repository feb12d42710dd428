// Replaced by the npe implementation (in progress in a parallel branch).
#include "core/error.hpp"
#include "sbi/methods.hpp"

namespace asbi::sbi::detail {
std::unique_ptr<Estimator> make_npe(std::shared_ptr<const Prior>, std::int64_t,
                                    const EstimatorOptions&) {
  throw core::StateError("npe: not built yet");
}
}  // namespace asbi::sbi::detail
