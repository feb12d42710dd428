// The main job, for now: fit a small MLP to a smooth 2-D function with asbi's tape, printing the
// loss as it falls. Later issues replace it with the `asbi` command.
//
//   asbi_train_mlp [--steps N] [--width H] [--seed S] [--device cpu|cuda] [--threads T]
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/parameter.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"
#include "core/rng.hpp"

namespace {

using namespace asbi;
using core::Device;
using core::DType;
using core::Tensor;

struct Options {
  int steps = 1500;
  int width = 64;
  int batch = 256;
  double learning_rate = 0.05;
  std::uint64_t seed = 1;
  Device device = Device::cpu;
};

[[noreturn]] void usage(const char* problem) {
  std::fprintf(stderr,
               "asbi_train_mlp: %s\n"
               "usage: asbi_train_mlp [--steps N] [--width H] [--seed S] [--device cpu|cuda] "
               "[--threads T]\n"
               "example: asbi_train_mlp --steps 2000 --width 128 --threads 2\n",
               problem);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") usage("fits an MLP to f(a, b) = sin(3a) cos(2b)");
    if (i + 1 >= argc) usage(("missing value after " + flag).c_str());
    const char* value = argv[++i];
    char* end = nullptr;
    const long n = std::strtol(value, &end, 10);
    const bool numeric = *end == '\0' && n > 0;
    if (flag == "--device") {
      if (std::strcmp(value, "cpu") == 0) o.device = Device::cpu;
      else if (std::strcmp(value, "cuda") == 0) o.device = Device::cuda;
      else usage("--device expects cpu or cuda");
    } else if (!numeric) {
      usage((flag + " expects a positive integer, got '" + value + "'").c_str());
    } else if (flag == "--steps") {
      o.steps = static_cast<int>(n);
    } else if (flag == "--width") {
      o.width = static_cast<int>(n);
    } else if (flag == "--seed") {
      o.seed = static_cast<std::uint64_t>(n);
    } else if (flag == "--threads") {
      omp_set_num_threads(static_cast<int>(n));
    } else {
      usage(("unknown option " + flag).c_str());
    }
  }
  return o;
}

// PyTorch's default for nn.Linear: weights and bias uniform in ±1/√fan_in.
ad::Parameter uniform_parameter(const char* name, core::Shape shape, std::int64_t fan_in,
                                std::uint64_t seed, std::uint64_t stream, Device device) {
  std::vector<float> u(static_cast<std::size_t>(shape.numel()));
  core::fill_uniform(seed, stream, 0, std::span<float>(u));
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  std::vector<double> values(u.size());
  for (std::size_t i = 0; i < u.size(); ++i) values[i] = bound * (2.0 * u[i] - 1.0);
  return ad::Parameter(name, Tensor::from(values, shape).to(device));
}

}  // namespace

int main(int argc, char** argv) try {
  const Options opt = parse(argc, argv);
  const std::int64_t n = 4096, H = opt.width;

  // Data: inputs uniform on [-1, 1]², targets f(a, b) = sin(3a) cos(2b).
  std::vector<float> u(static_cast<std::size_t>(2 * n));
  core::fill_uniform(opt.seed, /*stream=*/0, 0, std::span<float>(u));
  std::vector<double> xs(u.size()), ys(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < u.size(); ++i) xs[i] = 2.0 * u[i] - 1.0;
  for (std::size_t i = 0; i < ys.size(); ++i)
    ys[i] = std::sin(3 * xs[2 * i]) * std::cos(2 * xs[2 * i + 1]);
  const Tensor x = Tensor::from(xs, {n, 2}).to(opt.device);
  const Tensor y = Tensor::from(ys, {n, 1}).to(opt.device);

  std::vector<ad::Parameter> params;
  params.push_back(uniform_parameter("l1.weight", {H, 2}, 2, opt.seed, 1, opt.device));
  params.push_back(uniform_parameter("l1.bias", {H}, 2, opt.seed, 2, opt.device));
  params.push_back(uniform_parameter("l2.weight", {H, H}, H, opt.seed, 3, opt.device));
  params.push_back(uniform_parameter("l2.bias", {H}, H, opt.seed, 4, opt.device));
  params.push_back(uniform_parameter("l3.weight", {1, H}, H, opt.seed, 5, opt.device));
  params.push_back(uniform_parameter("l3.bias", {1}, H, opt.seed, 6, opt.device));
  auto model = [&](const ad::Var& in) {
    ad::Var h = ad::tanh(ad::linear(in, params[0], params[1]));
    h = ad::tanh(ad::linear(h, params[2], params[3]));
    return ad::linear(h, params[4], params[5]);
  };

  std::printf("asbi: fitting sin(3a)cos(2b) with a 2-%lld-%lld-1 tanh MLP on %s\n",
              static_cast<long long>(H), static_cast<long long>(H),
              core::backend(opt.device).description().c_str());
  const auto start = std::chrono::steady_clock::now();
  // Plain SGD with momentum 0.9 over contiguous minibatches (the data are already random).
  std::vector<Tensor> velocity;
  for (auto& p : params) velocity.push_back(Tensor::zeros(p.value().shape(), DType::f32, opt.device));
  const double momentum = 0.9;
  double running = 0;
  for (int step = 1; step <= opt.steps; ++step) {
    const std::int64_t first = (step - 1) * opt.batch % n;
    ad::Tape tape;
    ad::Var residual = ad::sub(model(x.rows(first, first + opt.batch)),
                               y.rows(first, first + opt.batch));
    ad::Var loss = ad::mean(ad::square(residual));
    running = step == 1 ? loss.item() : 0.95 * running + 0.05 * loss.item();
    tape.backward(loss);
    for (std::size_t i = 0; i < params.size(); ++i) {
      core::Backend& k = core::backend(opt.device);
      k.axpy(momentum - 1.0, velocity[i], velocity[i]);  // v ← μ v + g
      k.axpy(1.0, params[i].grad(), velocity[i]);
      k.axpy(-opt.learning_rate, velocity[i], params[i].value());  // θ ← θ - η v
      params[i].zero_grad();
    }
    if (step == 1 || step % 100 == 0)
      std::printf("step %5d  loss %.6f\n", step, running);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("done: %d steps in %.2f s (%.0f samples/s)\n", opt.steps, seconds,
              opt.steps * opt.batch / seconds);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "asbi_train_mlp: error: %s\n", e.what());
  return 1;
}
