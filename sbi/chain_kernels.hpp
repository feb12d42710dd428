#pragma once
// One MCMC chain on a task posterior log p(θ) + log p(x_o | θ), written once for the CPU and the
// GPU: sample_task_posterior (sbi/mcmc.hpp) runs advance_chain for every chain, in an OpenMP loop
// on the CPU or as one CUDA thread per chain (sbi/cuda/).
//
// These are sample_mcmc's slice and random-walk Metropolis transitions taken one chain at a
// time. sample_mcmc moves all chains in lock-step so that a neural target sees one batch per
// step, but each chain still draws from its own stream in an order that lock-step does not
// change; so a chain run alone here, from PhiloxRng(seed, chain) (which is core::Rng word for
// word), makes the same draws and the same moves. What couples the chains, the adaptation of the
// slice widths and of the Metropolis proposal during warm-up, stays in the host driver, which
// reads the per-chain statistics below after each warm-up iteration and sums them in
// sample_mcmc's order. Test McmcTaskChains.HostChainsEqualSampleMcmc checks the equality bit for
// bit on the CPU.
#include <cmath>
#include <cstdint>

#include "core/host_device.hpp"
#include "sbi/task_kernels.hpp"

namespace asbi::sbi::kernels {

// The posterior of one observation of a kernel task.
struct ChainTarget {
  TaskKernel task;
  double x_obs[kMaxXDim];
};

// log p(θ) + log p(x_o | θ); -inf outside the prior's support, where the likelihood is not
// evaluated (as TaskPosteriorDensity), and -inf for NaN (as sample_mcmc's scorer).
ASBI_HOST_DEVICE inline double log_posterior(const ChainTarget& t, const double* theta) {
  const double lp = log_prior(t.task, theta);
  if (!std::isfinite(lp)) return -INFINITY;
  const double v = lp + log_likelihood(t.task, theta, t.x_obs);
  return std::isnan(v) ? -INFINITY : v;
}

// Everything one chain carries between launches.
struct ChainSlot {
  double x[kMaxThetaDim];
  double lp;
  PhiloxRng rng;
  std::int64_t evaluations;  // target evaluations, initialisation included
  std::int64_t accepted;     // mh: accepted proposals after warm-up
  bool started;              // initialisation found a point of finite density
  // The last iteration's statistics, which the warm-up adaptation reads:
  bool last_accepted;                 // mh
  int accept_round[kMaxThetaDim];     // slice: shrinkage round that accepted coordinate d, or -1
  double accept_bracket[kMaxThetaDim];  // slice: width of the bracket it was drawn from
};

// sample_mcmc's ChainInit::sir for one chain: `candidates` prior draws, each weighted by
// π(θ)/p(θ) (weight -inf where the prior is -inf), one picked by rng.categorical of the weights.
// The candidates are regenerated from a copy of the generator instead of stored: pass 1 finds the
// largest weight, pass 2 the total of exp(w − max), pass 3 walks the cumulative sum to the pick
// (the operations and order of Rng::categorical). Returns false when no weight is finite.
ASBI_HOST_DEVICE inline bool initialise_sir(const ChainTarget& t, int candidates, ChainSlot& s) {
  const int d = theta_dim(t.task);
  double theta[kMaxThetaDim];
  auto weight = [&](double& log_pi) {
    log_pi = log_posterior(t, theta);
    const double lq = log_prior(t.task, theta);
    return std::isfinite(lq) ? log_pi - lq : -INFINITY;
  };
  const PhiloxRng start = s.rng;
  double max_w = -INFINITY, log_pi = 0;
  for (int i = 0; i < candidates; ++i) {
    sample_prior(t.task, s.rng, theta);
    const double w = weight(log_pi);
    max_w = max_w < w ? w : max_w;  // std::max
  }
  s.evaluations += candidates;
  if (!(max_w > -INFINITY) || !std::isfinite(max_w)) return false;
  const PhiloxRng after = s.rng;
  PhiloxRng replay = start;
  double total = 0;
  for (int i = 0; i < candidates; ++i) {
    sample_prior(t.task, replay, theta);
    total += exp(weight(log_pi) - max_w);
  }
  s.rng = after;
  const double target = s.rng.uniform() * total;
  replay = start;
  double cum = 0;
  for (int i = 0; i < candidates; ++i) {
    sample_prior(t.task, replay, theta);
    const double p = exp(weight(log_pi) - max_w);
    if (p > 0) {  // the last positive candidate is the fallback when rounding leaves cum < target
      for (int j = 0; j < d; ++j) s.x[j] = theta[j];
      s.lp = log_pi;
    }
    cum += p;
    if (target < cum) break;
  }
  return true;
}

// sample_mcmc's ChainInit::proposal for one chain: prior draws until one has a finite density,
// at most `candidates` of them.
ASBI_HOST_DEVICE inline bool initialise_proposal(const ChainTarget& t, int candidates,
                                                 ChainSlot& s) {
  const int d = theta_dim(t.task);
  double theta[kMaxThetaDim];
  for (int i = 0; i < candidates; ++i) {
    sample_prior(t.task, s.rng, theta);
    const double lp = log_posterior(t, theta);
    ++s.evaluations;
    if (lp > -INFINITY) {
      for (int j = 0; j < d; ++j) s.x[j] = theta[j];
      s.lp = lp;
      return true;
    }
  }
  return false;
}

// Chain `chain` of a run seeded `seed`: its stream, then its starting point.
ASBI_HOST_DEVICE inline void initialise_chain(const ChainTarget& t, bool sir, int candidates,
                                              std::uint64_t seed, std::int64_t chain,
                                              ChainSlot& s) {
  s.rng = PhiloxRng(seed, static_cast<std::uint64_t>(chain));
  s.lp = -INFINITY;
  for (int j = 0; j < kMaxThetaDim; ++j) {
    s.x[j] = 0;
    s.accept_round[j] = -1;
    s.accept_bracket[j] = 0;
  }
  s.evaluations = 0;
  s.accepted = 0;
  s.last_accepted = false;
  s.started = sir ? initialise_sir(t, candidates, s) : initialise_proposal(t, candidates, s);
}

enum class ChainSampler : std::uint8_t { slice, mh };

// What one launch does to every chain: `iterations` transitions starting at iteration
// `first_iteration` of warmup + kept · thin, with the adapted quantities fixed for the launch.
struct ChainSweep {
  ChainSampler sampler;
  std::int64_t first_iteration, iterations;
  std::int64_t warmup, thin, kept;
  // slice: bracket width per dimension, Neal's step-out budget m.
  double width[kMaxThetaDim];
  int max_steps_out;
  // mh: proposal x + scale · L z, L the lower Cholesky factor (row-major D×D).
  double scale;
  double chol[kMaxThetaDim * kMaxThetaDim];
};

// The shrinkage rounds after which a point that rounding keeps rejecting stays where it is
// (sample_mcmc's kMaxRounds).
inline constexpr int kSliceMaxRounds = 200;

// One slice sweep (Neal 2003: stepping out, fig. 3, then shrinkage, fig. 5) over the coordinates
// in order, drawing per coordinate the height, the bracket offset and the step-out split, then a
// uniform per shrinkage round, as sample_mcmc's SliceSampler does for each chain.
ASBI_HOST_DEVICE inline void slice_sweep(const ChainTarget& t, const ChainSweep& sw, ChainSlot& s) {
  const int d = theta_dim(t.task), m = sw.max_steps_out;
  for (int k = 0; k < d; ++k) {
    const double w = sw.width[k];
    const double height = s.lp + log(s.rng.uniform());
    double lower = s.x[k] - w * s.rng.uniform();
    double upper = lower + w;
    const int split = static_cast<int>(m * s.rng.uniform());
    int steps_lower = split < m - 1 ? split : m - 1;
    int steps_upper = m - 1 - steps_lower;
    const double current = s.x[k];
    // Step out: each end moves while it is inside the slice (the order of the two ends and of
    // the evaluations does not change the result).
    while (steps_lower > 0) {
      s.x[k] = lower;
      ++s.evaluations;
      if (log_posterior(t, s.x) > height) {
        lower -= w;
        --steps_lower;
      } else {
        steps_lower = 0;
      }
    }
    while (steps_upper > 0) {
      s.x[k] = upper;
      ++s.evaluations;
      if (log_posterior(t, s.x) > height) {
        upper += w;
        --steps_upper;
      } else {
        steps_upper = 0;
      }
    }
    s.accept_round[k] = -1;
    s.x[k] = current;
    for (int round = 0; round < kSliceMaxRounds; ++round) {
      const double trial = lower + (upper - lower) * s.rng.uniform();
      s.x[k] = trial;
      const double lp = log_posterior(t, s.x);
      ++s.evaluations;
      if (lp > height) {
        s.accept_round[k] = round;
        s.accept_bracket[k] = upper - lower;
        s.lp = lp;
        break;
      }
      s.x[k] = current;
      (trial < current ? lower : upper) = trial;
    }
  }
}

// One random-walk Metropolis step with the proposal x + scale · L z: D normals, then the
// acceptance uniform, as sample_mcmc's MetropolisSampler draws them for each chain.
ASBI_HOST_DEVICE inline bool metropolis_step(const ChainTarget& t, const ChainSweep& sw,
                                             ChainSlot& s) {
  const int d = theta_dim(t.task);
  double z[kMaxThetaDim], proposal[kMaxThetaDim];
  for (int i = 0; i < d; ++i) z[i] = s.rng.normal();
  for (int i = 0; i < d; ++i) {
    double step = 0;
    for (int j = 0; j <= i; ++j) step += sw.chol[i * d + j] * z[j];
    proposal[i] = s.x[i] + sw.scale * step;
  }
  const double lp = log_posterior(t, proposal);
  ++s.evaluations;
  const double log_u = log(s.rng.uniform());
  if (log_u < lp - s.lp) {
    for (int i = 0; i < d; ++i) s.x[i] = proposal[i];
    s.lp = lp;
    return true;
  }
  return false;
}

// The launch's iterations for one chain. Kept states (every thin-th after warm-up) go to
// kept_states[chain, t, :] of a [chains, kept, D] buffer.
ASBI_HOST_DEVICE inline void advance_chain(const ChainTarget& t, const ChainSweep& sw,
                                           std::int64_t chain, ChainSlot& s,
                                           double* kept_states) {
  const int d = theta_dim(t.task);
  for (std::int64_t it = sw.first_iteration; it < sw.first_iteration + sw.iterations; ++it) {
    if (sw.sampler == ChainSampler::slice) {
      slice_sweep(t, sw, s);
    } else {
      s.last_accepted = metropolis_step(t, sw, s);
      if (it >= sw.warmup && s.last_accepted) ++s.accepted;
    }
    const std::int64_t after = it + 1 - sw.warmup;
    if (after > 0 && after % sw.thin == 0) {
      double* out = kept_states + (chain * sw.kept + after / sw.thin - 1) * d;
      for (int j = 0; j < d; ++j) out[j] = s.x[j];
    }
  }
}

}  // namespace asbi::sbi::kernels
