// Optimizers against PyTorch's update rules, written out by hand below for a tiny problem; AdamW's
// decoupled decay; convergence; gradient clipping; state names and exact resumption from state();
// no allocation in a steady-state step; and the errors.
#include <gtest/gtest.h>

#include "test_util.hpp"

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"
#include "core/memory.hpp"
#include "nn/optim.hpp"

namespace asbi::nn {
namespace {

using asbi::test_util::expect_error_naming;

// The tiny problem: L(θ) = Σ_i a_i (θ_i - c_i)², so ∇L = 2 a ⊙ (θ - c), over two parameters
// ("w" with 3 entries and "b" with 1) that share the formula.
constexpr std::array<double, 4> kA = {1.0, 3.0, 0.5, 2.0};
constexpr std::array<double, 4> kC = {0.5, -1.0, 2.0, 0.25};
constexpr std::array<double, 4> kTheta0 = {1.0, 0.5, -0.5, -2.0};

struct Problem {
  Parameter w{"w", Tensor::from({kTheta0[0], kTheta0[1], kTheta0[2]}, {3}, DType::f64)};
  Parameter b{"b", Tensor::from({kTheta0[3]}, {1}, DType::f64)};
  std::vector<NamedParameter> parameters() { return {{"w", &w}, {"b", &b}}; }

  explicit Problem(DType dtype = DType::f64, Device device = Device::cpu) {
    if (dtype != DType::f64 || device != Device::cpu) {
      w = Parameter("w", w.value().to(dtype).to(device));
      b = Parameter("b", b.value().to(dtype).to(device));
    }
  }
  // Gradients through the tape, as training computes them.
  void backward() {
    const Device d = w.value().device();
    const DType t = w.value().dtype();
    const Tensor a = Tensor::from({kA[0], kA[1], kA[2], kA[3]}, {4}, t).to(d);
    const Tensor c = Tensor::from({kC[0], kC[1], kC[2], kC[3]}, {4}, t).to(d);
    ad::Tape tape;
    Var theta = ad::concat({w, b}, 0);
    tape.backward(ad::sum(ad::mul(Var(a), ad::square(ad::sub(theta, Var(c))))));
  }
  std::vector<double> theta() const {
    std::vector<double> v = w.value().to_vector();
    v.push_back(b.value().item());
    return v;
  }
};

std::array<double, 4> gradient(const std::array<double, 4>& theta) {
  std::array<double, 4> g{};
  for (int i = 0; i < 4; ++i) g[i] = 2 * kA[i] * (theta[i] - kC[i]);
  return g;
}

// torch.optim.SGD's documented algorithm (dampening τ = 0).
std::vector<std::array<double, 4>> sgd_reference(SgdOptions o, int steps) {
  std::array<double, 4> theta = kTheta0, b{};
  std::vector<std::array<double, 4>> out;
  for (int t = 1; t <= steps; ++t) {
    std::array<double, 4> g = gradient(theta);
    for (int i = 0; i < 4; ++i) {
      if (o.weight_decay != 0) g[i] = g[i] + o.weight_decay * theta[i];
      if (o.momentum != 0) {
        b[i] = t > 1 ? o.momentum * b[i] + g[i] : g[i];
        g[i] = o.nesterov ? g[i] + o.momentum * b[i] : b[i];
      }
      theta[i] = theta[i] - o.learning_rate * g[i];
    }
    out.push_back(theta);
  }
  return out;
}

// torch.optim.Adam / AdamW's documented algorithms, with the bias-corrected m̂ and v̂.
std::vector<std::array<double, 4>> adam_reference(AdamOptions o, bool decoupled, int steps) {
  std::array<double, 4> theta = kTheta0, m{}, v{};
  std::vector<std::array<double, 4>> out;
  for (int t = 1; t <= steps; ++t) {
    std::array<double, 4> g = gradient(theta);
    for (int i = 0; i < 4; ++i) {
      if (decoupled)
        theta[i] = theta[i] - o.learning_rate * o.weight_decay * theta[i];
      else if (o.weight_decay != 0)
        g[i] = g[i] + o.weight_decay * theta[i];
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
      const double m_hat = m[i] / (1 - std::pow(o.beta1, t));
      const double v_hat = v[i] / (1 - std::pow(o.beta2, t));
      theta[i] = theta[i] - o.learning_rate * m_hat / (std::sqrt(v_hat) + o.eps);
    }
    out.push_back(theta);
  }
  return out;
}

void expect_matches(Problem& problem, Optimizer& opt,
                    const std::vector<std::array<double, 4>>& reference, double tolerance) {
  for (std::size_t t = 0; t < reference.size(); ++t) {
    opt.zero_grad();
    problem.backward();
    opt.step();
    const std::vector<double> theta = problem.theta();
    for (int i = 0; i < 4; ++i)
      EXPECT_NEAR(theta[i], reference[t][i], tolerance) << "step " << t + 1 << ", entry " << i;
  }
}

TEST(Optim, SgdMatchesPyTorchRules) {
  for (SgdOptions o :
       {SgdOptions{.learning_rate = 0.1}, SgdOptions{.learning_rate = 0.05, .momentum = 0.9},
        SgdOptions{.learning_rate = 0.05, .momentum = 0.9, .weight_decay = 0.1},
        SgdOptions{
            .learning_rate = 0.05, .momentum = 0.8, .weight_decay = 0.01, .nesterov = true}}) {
    Problem p;
    auto opt = sgd(p.parameters(), o);
    SCOPED_TRACE(testing::Message() << "momentum " << o.momentum << ", nesterov " << o.nesterov);
    expect_matches(p, *opt, sgd_reference(o, 3), 1e-12);
  }
}

TEST(Optim, AdamMatchesPyTorchRules) {
  for (AdamOptions o : {AdamOptions{.learning_rate = 0.1}, AdamOptions{.learning_rate = 0.05,
                                                           .beta1 = 0.8,
                                                           .beta2 = 0.99,
                                                           .eps = 1e-6,
                                                           .weight_decay = 0.1}}) {
    Problem p;
    auto opt = adam(p.parameters(), o);
    expect_matches(p, *opt, adam_reference(o, false, 3), 1e-12);
  }
}

TEST(Optim, AdamWMatchesPyTorchRules) {
  const AdamOptions o{.learning_rate = 0.05, .beta1 = 0.85, .eps = 1e-7, .weight_decay = 0.2};
  Problem p;
  auto opt = adamw(p.parameters(), o);
  expect_matches(p, *opt, adam_reference(o, true, 3), 1e-12);
}

TEST(Optim, Float32FollowsFloat64) {
  const AdamOptions o{.learning_rate = 0.05, .weight_decay = 0.01};
  Problem p(DType::f32);
  auto opt = adamw(p.parameters(), o);
  expect_matches(p, *opt, adam_reference(o, true, 5), 1e-6);
}

TEST(Optim, AdamWDecayIsDecoupledFromTheGradient) {
  // With a zero gradient, AdamW only decays: θ_t = θ_0 (1 - γλ)^t, whatever θ's scale. Adam's L2
  // penalty instead enters the moments, and the normalised step moves a large θ by about γ per
  // step, far more than the decay's γλθ would.
  const AdamOptions o{.learning_rate = 0.01, .weight_decay = 0.5};
  Parameter w1("w", Tensor::from({4.0, -0.001}, {2}, DType::f64));
  Parameter w2("w", Tensor::from({4.0, -0.001}, {2}, DType::f64));
  auto decoupled = adamw({{"w", &w1}}, o);
  auto l2 = adam({{"w", &w2}}, o);
  for (int t = 0; t < 3; ++t) {
    decoupled->step();
    l2->step();
  }
  const double shrink = std::pow(1 - o.learning_rate * o.weight_decay, 3);
  EXPECT_DOUBLE_EQ(w1.value().at(0), 4.0 * shrink);
  EXPECT_DOUBLE_EQ(w1.value().at(1), -0.001 * shrink);
  EXPECT_NEAR(w2.value().at(0), 4.0 - 3 * o.learning_rate, 1e-5);
  // For a small θ the L2 step is still of order γ, hundreds of times the decay γλθ.
  EXPECT_GT(std::abs(w2.value().at(1) + 0.001), 100 * std::abs(w1.value().at(1) + 0.001));
}

TEST(Optim, AdamConvergesOnAQuadratic) {
  Problem p;
  auto opt = adam(p.parameters(), {.learning_rate = 0.05});
  for (int t = 0; t < 600; ++t) {
    opt->zero_grad();
    p.backward();
    opt->step();
  }
  const std::vector<double> theta = p.theta();
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(theta[i], kC[i], 1e-3) << "entry " << i;
}

TEST(Optim, LearningRateAndZeroGrad) {
  Problem p;
  auto opt = sgd(p.parameters(), {.learning_rate = 0.1});
  EXPECT_EQ(opt->learning_rate(), 0.1);
  opt->set_learning_rate(0.0);
  p.backward();
  opt->step();
  EXPECT_EQ(p.theta(), std::vector<double>(kTheta0.begin(), kTheta0.end()));
  EXPECT_NE(p.w.grad().to_vector(), std::vector<double>(3, 0.0));
  opt->zero_grad();
  EXPECT_EQ(p.w.grad().to_vector(), std::vector<double>(3, 0.0));
  EXPECT_EQ(p.b.grad().item(), 0.0);
  expect_error_naming<core::ValueError>([&] { opt->set_learning_rate(-1); }, {">= 0", "-1"});
}

TEST(Optim, StateIsNamedAndResumesExactly) {
  const AdamOptions o{.learning_rate = 0.05, .weight_decay = 0.01};
  Problem straight;
  auto opt = adamw(straight.parameters(), o);
  std::vector<std::string> names;
  for (const auto& [name, tensor] : opt->state()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"step", "exp_avg/w", "exp_avg_sq/w", "exp_avg/b",
                                             "exp_avg_sq/b"}));
  for (int t = 0; t < 5; ++t) {
    opt->zero_grad();
    straight.backward();
    opt->step();
  }
  EXPECT_EQ(opt->state()[0].second->item(), 5.0);

  // Three steps, then a fresh optimizer loads the state (as a checkpoint would) and goes on.
  Problem resumed;
  auto first = adamw(resumed.parameters(), o);
  for (int t = 0; t < 3; ++t) {
    first->zero_grad();
    resumed.backward();
    first->step();
  }
  auto second = adamw(resumed.parameters(), o);
  auto from = first->state(), to = second->state();
  ASSERT_EQ(from.size(), to.size());
  for (std::size_t i = 0; i < from.size(); ++i) to[i].second->copy_from(*from[i].second);
  for (int t = 0; t < 2; ++t) {
    second->zero_grad();
    resumed.backward();
    second->step();
  }
  EXPECT_EQ(resumed.theta(), straight.theta());

  Problem q;
  auto with_momentum = sgd(q.parameters(), {.momentum = 0.9});
  names.clear();
  for (const auto& [name, tensor] : with_momentum->state()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"step", "momentum/w", "momentum/b"}));
  EXPECT_EQ(sgd(q.parameters())->state().size(), 1u);  // no momentum, no buffers
}

TEST(Optim, SteadyStateStepAllocatesNothing) {
  Problem p(DType::f32);
  auto opt = adam(p.parameters(), {.weight_decay = 0.01});
  p.backward();
  const core::MemoryStats before = core::memory_stats();
  for (int t = 0; t < 10; ++t) opt->step();
  const core::MemoryStats after = core::memory_stats();
  EXPECT_EQ(after.allocations, before.allocations);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
}

TEST(Optim, ClipGradNormReturnsThePreClipNormAndClipsToMaxNorm) {
  Problem p;
  p.backward();
  auto norm_of = [&] {
    double s = 0;
    for (double g : p.w.grad().to_vector()) s += g * g;
    return std::sqrt(s + p.b.grad().item() * p.b.grad().item());
  };
  const double before = norm_of();
  const std::vector<double> direction = p.w.grad().to_vector();
  EXPECT_DOUBLE_EQ(clip_grad_norm(p.parameters(), 1.0), before);
  EXPECT_NEAR(norm_of(), 1.0, 1e-6);  // max_norm · ‖g‖ / (‖g‖ + 1e-6)
  for (std::size_t i = 0; i < direction.size(); ++i)
    EXPECT_NEAR(p.w.grad().at(static_cast<std::int64_t>(i)), direction[i] / before, 1e-6);

  // Below max_norm nothing changes.
  const std::vector<double> unchanged = p.w.grad().to_vector();
  EXPECT_NEAR(clip_grad_norm(p.parameters(), 10.0), 1.0, 1e-6);
  EXPECT_EQ(p.w.grad().to_vector(), unchanged);

  // Float32 gradients are summed in double.
  Problem f(DType::f32);
  f.backward();
  EXPECT_NEAR(clip_grad_norm(f.parameters(), 0.5), before, 1e-5);
  double s = 0;
  for (const NamedParameter& np : f.parameters())
    for (double g : np.parameter->grad().to_vector()) s += g * g;
  EXPECT_NEAR(std::sqrt(s), 0.5, 1e-6);
  expect_error_naming<core::ValueError>([&] { clip_grad_norm(p.parameters(), -1); },
                                        {"max_norm", "-1"});
}

TEST(Optim, ErrorsNameWhatWasExpected) {
  Problem p;
  expect_error_naming<core::ValueError>([&] { sgd(p.parameters(), {.nesterov = true}); },
                                        {"nesterov", "momentum"});
  expect_error_naming<core::ValueError>([&] { adam(p.parameters(), {.beta2 = 1.0}); },
                                        {"beta2", "[0, 1)", "1"});
  expect_error_naming<core::ValueError>([&] { adamw(p.parameters(), {.learning_rate = -1}); },
                                        {"adamw", "learning_rate"});
  expect_error_naming<core::ValueError>(
      [&] {
        adam({{"w", &p.w}, {"w", &p.b}});
      },
      {"'w'", "twice"});
  expect_error_naming<core::ValueError>(
      [&] {
        adam({{"w", &p.w}, {"v", &p.w}});
      },
      {"'v'", "twice"});
  expect_error_naming<core::ValueError>([] { adam({}); }, {"at least one parameter"});
}

// Parameters on the GPU (SGD: backend kernels; Adam, AdamW: the fused adam_step kernel) against
// the CPU update.
TEST(Optim, CudaParametersFollowTheCpuUpdate) {
  if (!core::device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device";
  for (DType dtype : {DType::f32, DType::f64}) {
    const double tolerance = dtype == DType::f64 ? 1e-12 : 1e-5;
    Problem cpu(dtype), gpu(dtype, Device::cuda);
    auto run = [](Problem& p, Optimizer& opt) {
      for (int t = 0; t < 4; ++t) {
        opt.zero_grad();
        p.backward();
        opt.step();
      }
    };
    std::vector<std::unique_ptr<Optimizer>> on_cpu, on_gpu;
    on_cpu.push_back(
        sgd(cpu.parameters(), {.momentum = 0.9, .weight_decay = 0.1, .nesterov = true}));
    on_gpu.push_back(
        sgd(gpu.parameters(), {.momentum = 0.9, .weight_decay = 0.1, .nesterov = true}));
    on_cpu.push_back(adam(cpu.parameters(), {.learning_rate = 0.05, .weight_decay = 0.1}));
    on_gpu.push_back(adam(gpu.parameters(), {.learning_rate = 0.05, .weight_decay = 0.1}));
    on_cpu.push_back(adamw(cpu.parameters(), {.learning_rate = 0.05}));
    on_gpu.push_back(adamw(gpu.parameters(), {.learning_rate = 0.05}));
    for (std::size_t k = 0; k < on_cpu.size(); ++k) {
      run(cpu, *on_cpu[k]);
      run(gpu, *on_gpu[k]);
      const std::vector<double> a = cpu.theta(), b = gpu.theta();
      for (int i = 0; i < 4; ++i) EXPECT_NEAR(a[i], b[i], tolerance) << "optimizer " << k;
    }
    EXPECT_NEAR(clip_grad_norm(gpu.parameters(), 0.1), clip_grad_norm(cpu.parameters(), 0.1),
                tolerance);
    EXPECT_NEAR(gpu.w.grad().at(0), cpu.w.grad().at(0), tolerance);
  }
}

}  // namespace
}  // namespace asbi::nn
