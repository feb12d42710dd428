#include "sbi/diagnostics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "nn/layers.hpp"

namespace asbi::sbi {
namespace {

using core::str;

// Row-major doubles of a rank-2 tensor, after checking that two sets have the same width.
struct Rows {
  std::vector<double> v;
  std::int64_t n = 0, d = 0;
  double at(std::int64_t i, std::int64_t k) const { return v[static_cast<std::size_t>(i * d + k)]; }
};

Rows rows_of(const Tensor& t, const char* fn, const char* what) {
  if (!t.defined() || t.rank() != 2)
    throw core::ShapeError(str(fn, ": expected ", what, " as a rank-2 [rows, dim] tensor, got ",
                               t.defined() ? str(t.shape()) : std::string("an undefined one")));
  return {t.to(core::Device::cpu).to_vector(), t.dim(0), t.dim(1)};
}

void check_widths(const Rows& x, const Rows& y, const char* fn) {
  if (x.d != y.d)
    throw core::ShapeError(str(fn, ": reference has ", x.d, " columns, samples have ", y.d));
}

double squared_distance(const Rows& a, std::int64_t i, const Rows& b, std::int64_t j) {
  double s = 0.0;
  for (std::int64_t k = 0; k < a.d; ++k) {
    const double diff = a.at(i, k) - b.at(j, k);
    s += diff * diff;
  }
  return s;
}

// sklearn's MLP initialisation: Glorot uniform in ±√(6 / (fan_in + fan_out)) for the weights and
// biases of every layer (sklearn picks factor 2 instead only for logistic *hidden* units), so that
// the classifier starts where sbibm's does rather than at asbi's torch-style default.
void glorot_init(const nn::Mlp& model, core::Rng& rng) {
  std::int64_t fan_in = 0, fan_out = 0;
  for (const nn::NamedParameter& p : model.parameters()) {
    Tensor& value = p.parameter->value();
    if (value.rank() == 2) {  // a weight [out, in]; its bias follows it
      fan_out = value.dim(0);
      fan_in = value.dim(1);
    }
    const double bound = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
    std::vector<double> u(static_cast<std::size_t>(value.numel()));
    for (double& x : u) x = bound * (2.0 * rng.uniform() - 1.0);
    value.copy_from(Tensor::from(u, value.shape(), value.dtype()));
  }
}

// sklearn's AdamOptimizer (sklearn/neural_network/_stochastic_optimizers.py), in float32 like
// sklearn's arrays. It folds both bias corrections into the step, γ_t = γ·√(1 − β₂ᵗ)/(1 − β₁ᵗ),
// and adds ε to the uncorrected √v: θ ← θ − γ_t·m/(√v + ε). torch's Adam (nn::adam) adds ε to
// the corrected √v̂ instead, which is the same rule with ε scaled by √(1 − β₂ᵗ); the two differ
// only while v is of order ε², but the protocol is sklearn's, so this is sklearn's rule.
class SklearnAdam {
 public:
  SklearnAdam(const std::vector<nn::NamedParameter>& parameters, double learning_rate)
      : learning_rate_(learning_rate) {
    for (const nn::NamedParameter& p : parameters) {
      parameters_.push_back(p.parameter);
      const auto n = static_cast<std::size_t>(p.parameter->value().numel());
      m_.emplace_back(n, 0.0f);
      v_.emplace_back(n, 0.0f);
    }
  }

  void step() {
    ++t_;
    const double step = learning_rate_ * std::sqrt(1 - std::pow(kBeta2, t_)) /
                        (1 - std::pow(kBeta1, t_));
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      float* theta = parameters_[i]->value().data<float>();
      const float* g = parameters_[i]->grad().data<float>();
      std::vector<float>& m = m_[i];
      std::vector<float>& v = v_[i];
      for (std::size_t j = 0; j < m.size(); ++j) {
        m[j] = static_cast<float>(kBeta1 * m[j] + (1 - kBeta1) * g[j]);
        v[j] = static_cast<float>(kBeta2 * v[j] + (1 - kBeta2) * g[j] * g[j]);
        theta[j] -= static_cast<float>(step * m[j] / (std::sqrt(v[j]) + kEpsilon));
      }
      parameters_[i]->zero_grad();
    }
  }

 private:
  static constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEpsilon = 1e-8;  // sklearn's defaults
  double learning_rate_;
  int t_ = 0;
  std::vector<ad::Parameter*> parameters_;
  std::vector<std::vector<float>> m_, v_;
};

// sklearn's binary_log_loss, the value its stopping rule watches: the mean over the batch of
// −[y log p + (1 − y) log(1 − p)] with p = sigmoid(z) clipped to [ε, 1 − ε], ε the float32
// machine epsilon (the gradient, p − y, is not clipped). Clipping caps a confidently wrong row's
// loss at −log ε ≈ 15.9, which the unclipped softplus form used for the gradient does not.
double clipped_log_loss(const Tensor& logits, const Tensor& labels) {
  const std::vector<double> z = logits.to_vector(), y = labels.to_vector();
  constexpr double eps = std::numeric_limits<float>::epsilon();
  double sum = 0.0;
  for (std::size_t r = 0; r < z.size(); ++r) {
    const double p = std::clamp(1.0 / (1.0 + std::exp(-z[r])), eps, 1.0 - eps);
    sum -= y[r] * std::log(p) + (1.0 - y[r]) * std::log(1.0 - p);
  }
  return sum / static_cast<double>(z.size());
}

// Copies the listed rows of a row-major float matrix into a fresh [count, d] tensor.
Tensor take_rows(const std::vector<float>& data, std::int64_t d, const std::int64_t* index,
                 std::int64_t count) {
  Tensor out = Tensor::empty({count, d}, core::DType::f32);
  float* o = out.data<float>();
  for (std::int64_t r = 0; r < count; ++r) std::copy_n(data.data() + index[r] * d, d, o + r * d);
  return out;
}

// One fold: trains on `train`, returns the accuracy on `test`. Mirrors sklearn's
// MLPClassifier._fit_stochastic with solver "adam" and early_stopping False.
double fit_and_score(const std::vector<float>& data, const std::vector<float>& labels,
                     std::int64_t d, const std::vector<std::int64_t>& train,
                     const std::vector<std::int64_t>& test, const C2stOptions& o) {
  // Every fold starts from the same seed, as sklearn's cloned estimator with fixed random_state.
  core::Rng init_rng(o.seed, 1);
  core::Rng shuffle_rng(o.seed, 2);
  const nn::Mlp model(d, {10 * d, 10 * d}, 1, init_rng, nn::Activation::relu, core::DType::f32);
  glorot_init(model, init_rng);
  std::vector<nn::NamedParameter> weights;
  for (const nn::NamedParameter& p : model.parameters())
    if (p.parameter->value().rank() == 2) weights.push_back(p);
  SklearnAdam optimizer(model.parameters(), o.learning_rate);

  const auto n_train = static_cast<std::int64_t>(train.size());
  const std::int64_t batch = std::min(o.batch_size, n_train);
  std::vector<std::int64_t> order(train.size());
  double best_loss = std::numeric_limits<double>::infinity();
  int no_improvement = 0;
  for (int epoch = 0; epoch < o.max_epochs; ++epoch) {
    const std::vector<std::int64_t> perm = shuffle_rng.permutation(n_train);
    for (std::size_t i = 0; i < perm.size(); ++i)
      order[i] = train[static_cast<std::size_t>(perm[i])];
    double accumulated = 0.0;
    for (std::int64_t start = 0; start < n_train; start += batch) {
      const std::int64_t count = std::min(batch, n_train - start);
      const Tensor xb = take_rows(data, d, order.data() + start, count);
      const Tensor yb = take_rows(labels, 1, order.data() + start, count);
      ad::Tape tape;
      const ad::Var logits = model(xb);
      // Log-loss of a logistic output from logits: softplus(z) − y·z, stable for large |z|.
      const ad::Var data_loss = ad::mean(ad::sub(ad::softplus(logits), ad::mul(yb, logits)));
      // sklearn adds alpha/2 · ‖W‖² divided by the batch size to each batch's loss
      // (MLPClassifier._backprop), so the gradient gets alpha · W / batch size.
      const double l2 = 0.5 * o.alpha / static_cast<double>(count);
      ad::Var penalty = ad::scale(ad::sum(ad::square(*weights.front().parameter)), l2);
      for (std::size_t w = 1; w < weights.size(); ++w)
        penalty = ad::add(penalty, ad::scale(ad::sum(ad::square(*weights[w].parameter)), l2));
      accumulated +=
          (clipped_log_loss(logits.value(), yb) + penalty.item()) * static_cast<double>(count);
      tape.backward(ad::add(data_loss, penalty));
      optimizer.step();
    }
    const double epoch_loss = accumulated / static_cast<double>(n_train);
    if (epoch_loss > best_loss - o.tol)
      ++no_improvement;
    else
      no_improvement = 0;
    best_loss = std::min(best_loss, epoch_loss);
    if (no_improvement > o.n_iter_no_change) break;
  }

  ad::NoGrad no_grad;
  const auto n_test = static_cast<std::int64_t>(test.size());
  const Tensor logits = model(take_rows(data, d, test.data(), n_test)).value();
  const std::vector<double> z = logits.to_vector();
  std::int64_t correct = 0;
  for (std::int64_t r = 0; r < n_test; ++r) {
    const float predicted = z[static_cast<std::size_t>(r)] > 0.0 ? 1.0f : 0.0f;
    correct += predicted == labels[static_cast<std::size_t>(test[static_cast<std::size_t>(r)])];
  }
  return static_cast<double>(correct) / static_cast<double>(n_test);
}

}  // namespace

double c2st(const Tensor& reference, const Tensor& samples, const C2stOptions& options) {
  const Rows x = rows_of(reference, "c2st", "reference");
  const Rows y = rows_of(samples, "c2st", "samples");
  check_widths(x, y, "c2st");
  if (options.folds < 2)
    throw core::ValueError(str("c2st: expected at least 2 folds, got ", options.folds));
  if (x.n < 2 || y.n < 1 || x.n + y.n < 2 * options.folds)
    throw core::ValueError(
        str("c2st: expected at least 2 reference rows, 1 sample row and 2 rows "
            "per fold, got ",
            x.n, " and ", y.n, " rows for ", options.folds, " folds"));
  if (options.max_epochs < 1 || options.batch_size < 1)
    throw core::ValueError("c2st: max_epochs and batch_size must be positive");
  const std::int64_t d = x.d;

  std::vector<double> mean(static_cast<std::size_t>(d), 0.0), sd(static_cast<std::size_t>(d), 1.0);
  if (options.z_score) {
    for (std::int64_t k = 0; k < d; ++k) {
      double m = 0.0;
      for (std::int64_t i = 0; i < x.n; ++i) m += x.at(i, k);
      m /= static_cast<double>(x.n);
      double ss = 0.0;
      for (std::int64_t i = 0; i < x.n; ++i) ss += (x.at(i, k) - m) * (x.at(i, k) - m);
      const double s = std::sqrt(ss / static_cast<double>(x.n - 1));
      if (!(s > 0.0) || !std::isfinite(s))
        throw core::ValueError(str("c2st: reference column ", k + 1, " has std ", s,
                                   "; expected a positive, finite spread to z-score with"));
      mean[static_cast<std::size_t>(k)] = m;
      sd[static_cast<std::size_t>(k)] = s;
    }
  }
  // float32 like sbibm, which hands float32 torch tensors to sklearn.
  const std::int64_t n = x.n + y.n;
  std::vector<float> data(static_cast<std::size_t>(n * d));
  std::vector<float> labels(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const bool is_x = i < x.n;
    for (std::int64_t k = 0; k < d; ++k) {
      const double v = is_x ? x.at(i, k) : y.at(i - x.n, k);
      data[static_cast<std::size_t>(i * d + k)] = static_cast<float>(
          (v - mean[static_cast<std::size_t>(k)]) / sd[static_cast<std::size_t>(k)]);
    }
    labels[static_cast<std::size_t>(i)] = is_x ? 0.0f : 1.0f;
  }

  // KFold(shuffle=True): one permutation cut into consecutive folds, the first n % k one larger.
  core::Rng fold_rng(options.seed, 0);
  const std::vector<std::int64_t> perm = fold_rng.permutation(n);
  double total = 0.0;
  std::int64_t start = 0;
  for (int f = 0; f < options.folds; ++f) {
    const std::int64_t size = n / options.folds + (f < n % options.folds ? 1 : 0);
    std::vector<std::int64_t> train, test;
    for (std::int64_t i = 0; i < n; ++i)
      (i >= start && i < start + size ? test : train).push_back(perm[static_cast<std::size_t>(i)]);
    total += fit_and_score(data, labels, d, train, test, options);
    start += size;
  }
  return total / options.folds;
}

double median_pairwise_distance(const Tensor& x) {
  const Rows r = rows_of(x, "median_pairwise_distance", "x");
  if (r.n < 2)
    throw core::ValueError(str("median_pairwise_distance: expected at least 2 rows, got ", r.n));
  std::vector<double> d2;
  d2.reserve(static_cast<std::size_t>(r.n * (r.n - 1) / 2));
  for (std::int64_t i = 0; i < r.n; ++i)
    for (std::int64_t j = i + 1; j < r.n; ++j) d2.push_back(squared_distance(r, i, r, j));
  // The square root is monotone, so the median of the squares gives the median distance.
  const auto mid = d2.begin() + static_cast<std::ptrdiff_t>((d2.size() - 1) / 2);
  std::nth_element(d2.begin(), mid, d2.end());
  return std::sqrt(*mid);
}

double mmd(const Tensor& reference, const Tensor& samples) {
  const Rows x = rows_of(reference, "mmd", "reference");
  const Rows y = rows_of(samples, "mmd", "samples");
  check_widths(x, y, "mmd");
  if (x.n < 2 || y.n < 2)
    throw core::ValueError(
        str("mmd: the unbiased estimator needs at least 2 rows per set, got ", x.n, " and ", y.n));
  const auto has_nan = [](const Rows& r) {
    return std::any_of(r.v.begin(), r.v.end(), [](double v) { return std::isnan(v); });
  };
  if (has_nan(x) || has_nan(y)) return std::numeric_limits<double>::quiet_NaN();
  const double sigma = median_pairwise_distance(reference);
  if (!(sigma > 0.0))
    throw core::ValueError(
        "mmd: the median pairwise distance of the reference is 0; expected "
        "distinct reference rows to set the kernel bandwidth");
  const double gamma = 1.0 / (2.0 * sigma * sigma);

  // Sums over i < j, doubled: the kernel is symmetric.
  const auto within = [gamma](const Rows& r) {
    double s = 0.0;
    for (std::int64_t i = 0; i < r.n; ++i)
      for (std::int64_t j = i + 1; j < r.n; ++j)
        s += std::exp(-gamma * squared_distance(r, i, r, j));
    return 2.0 * s / static_cast<double>(r.n * (r.n - 1));
  };
  double cross = 0.0;
  for (std::int64_t i = 0; i < x.n; ++i)
    for (std::int64_t j = 0; j < y.n; ++j) cross += std::exp(-gamma * squared_distance(x, i, y, j));
  cross /= static_cast<double>(x.n * y.n);
  return within(x) + within(y) - 2.0 * cross;
}

}  // namespace asbi::sbi
