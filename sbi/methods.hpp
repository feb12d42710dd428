#pragma once
// The constructors behind make_estimator, one per family (npe.cpp, nle.cpp, nre.cpp). Internal to
// sbi/: users call make_estimator and load_posterior (sbi/estimator.hpp).
#include <memory>
#include <string>

#include "sbi/estimator.hpp"

namespace asbi::sbi::detail {

// DeviceError naming `who` and the device unless the device is present.
void check_device(const std::string& who, core::Device device);

// `trained_flow`, when given, must come from build_npe_flow with the same dimensions and options:
// the estimator starts from it (its posterior is usable at once; train() continues from it).
std::unique_ptr<Estimator> make_npe(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
                                    const EstimatorOptions& options,
                                    std::unique_ptr<flows::ConditionalFlow> trained_flow = nullptr);
// NPE's conditional flow q(θ | x) for these options (initial weights from Rng(options.seed, 0)),
// on options.device; z-scoring statistics fitted on theta [n, D] and x [n, X] (any device), or
// identity statistics when null.
std::unique_ptr<flows::ConditionalFlow> build_npe_flow(std::int64_t theta_dim, std::int64_t x_dim,
                                                       const EstimatorOptions& options,
                                                       const Tensor* theta, const Tensor* x);
DType npe_flow_dtype(const EstimatorOptions& options);
std::unique_ptr<Estimator> make_nle(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
                                    const EstimatorOptions& options);
// nre_a, nre_b and nre_c.
std::unique_ptr<Estimator> make_nre(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
                                    const EstimatorOptions& options);

}  // namespace asbi::sbi::detail
