#pragma once
// The rational-quadratic spline of Neural Spline Flows (Durkan et al. 2019) as one fused,
// differentiable op: normalising the raw bin parameters, locating the bin, evaluating the spline
// (or its inverse) and its log-derivative, and all their gradients, in one kernel per direction.
#include "autodiff/var.hpp"

namespace asbi::flows {

struct SplineOptions {
  int bins = 10;                   // K
  double tail_bound = 3.0;         // B: identity outside [-B, B]
  double min_bin_width = 1e-3;
  double min_bin_height = 1e-3;
  double min_derivative = 1e-3;
};

struct SplineResult {
  ad::Var value;    // [N, D]: y = s(x) (or x = s⁻¹(y) when inverse)
  ad::Var log_det;  // [N, D]: log|ds/dx| (or log|ds⁻¹/dy| = -log|ds/dx| at x) per element
};

// x [N, D]; unnormalised widths and heights [N, D, K]; unnormalised interior derivatives
// [N, D, K - 1] (the boundary derivatives are 1, matching the identity tails). x may have any
// rank from 1 to 3, the parameters then x's shape followed by K or K - 1. Semantics of nflows'
// unconstrained_rational_quadratic_spline(tails="linear"); math and gradients in docs/spline.md.
// Records two nodes (value, and log_det on top of it) and runs one kernel each way. Throws
// ShapeError naming the tensor whose shape does not fit, ValueError for options out of range
// (bins in [2, 64], tail_bound > 0, min_bin_width · bins < 1, min_bin_height · bins < 1,
// min_derivative ≥ 0).
SplineResult rq_spline(const ad::Var& x, const ad::Var& widths, const ad::Var& heights,
                       const ad::Var& derivatives, const SplineOptions& options,
                       bool inverse = false);

}  // namespace asbi::flows
