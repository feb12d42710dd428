#pragma once
// Sample-based distances between an approximate posterior and a reference posterior, computed the
// way sbibm computes them (see the protocol in shared/reference/sbibm/TASKS.md), so that numbers
// from asbi can be set beside sbibm's published tables.
//
//   Tensor ref = sbi::read_csv(".../reference_posterior_samples.csv");
//   double acc = sbi::c2st(ref, samples);  // 0.5: indistinguishable, 1.0: fully separable
//   double d = sbi::mmd(ref, samples);      // squared MMD, ≈ 0 when the sets agree
#include <cstdint>

#include "core/tensor.hpp"

namespace asbi::sbi {

using core::Tensor;

// sbibm's C2ST: sklearn MLPClassifier(relu, hidden (10·D, 10·D), adam, max_iter 10000) with
// sklearn's defaults, under KFold(5, shuffle) cross-validation. The defaults below are those; they
// are options only so that tests and quick checks can change the seed or the folds. Training
// follows sklearn's _fit_stochastic step by step: Glorot-uniform initialisation of weights and
// biases, float32, sklearn's Adam rule (ε added to the uncorrected √v), the L2 term
// alpha/(2·batch)·‖W‖² in each batch's loss, and the stopping rule on the epoch's mean training
// loss as sklearn computes it (probabilities clipped to [ε₃₂, 1 − ε₃₂]). The random streams are
// asbi's, so results agree with sklearn's in distribution, not draw for draw.
struct C2stOptions {
  std::uint64_t seed = 1;  // fold assignment, weight initialisation and minibatch order
  int folds = 5;           // plain KFold with shuffling, not stratified, as sbibm
  bool z_score = true;     // both sets scaled by the reference's mean and std (n − 1)
  int max_epochs = 10000;  // sklearn max_iter
  double learning_rate = 1e-3;
  double alpha = 1e-4;            // L2 penalty on the weights (not the biases), as sklearn
  std::int64_t batch_size = 200;  // min(batch_size, training rows)
  double tol = 1e-4;              // an epoch "improves" when its mean training loss beats the
  int n_iter_no_change = 10;      // best so far by tol; stop after more than this many without
};

// Mean held-out accuracy of classifiers trained to tell `reference` [n, D] (label 0) from
// `samples` [m, D] (label 1). Any dtype; computed in float32 like sbibm. Throws core::ShapeError
// for mismatched or non-rank-2 inputs and core::ValueError for too few rows or a reference column
// with zero spread (it cannot be z-scored).
double c2st(const Tensor& reference, const Tensor& samples, const C2stOptions& options = {});

// The median of the Euclidean distances between all pairs i < j of rows of x (torch.pdist), the
// lower middle value for an even count (torch.median). Holds all n(n − 1)/2 distances at once.
double median_pairwise_distance(const Tensor& x);

// sbibm's MMD: the unbiased squared MMD with the Gaussian kernel exp(−‖a − b‖² / (2σ²)), σ the
// median pairwise distance within `reference`; no z-scoring. NaN if any input is NaN. O(n²·D).
double mmd(const Tensor& reference, const Tensor& samples);

}  // namespace asbi::sbi
