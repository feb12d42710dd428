#pragma once
// The constructors behind make_estimator, one per family (npe.cpp, nle.cpp, nre.cpp). Internal to
// sbi/: users call make_estimator and load_posterior (sbi/estimator.hpp).
#include <memory>

#include "sbi/estimator.hpp"

namespace asbi::sbi::detail {

std::unique_ptr<Estimator> make_npe(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
                                    const EstimatorOptions& options);
std::unique_ptr<Estimator> make_nle(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
                                    const EstimatorOptions& options);
// nre_a, nre_b and nre_c.
std::unique_ptr<Estimator> make_nre(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
                                    const EstimatorOptions& options);

}  // namespace asbi::sbi::detail
