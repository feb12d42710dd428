#include <gtest/gtest.h>
#include "autodiff/ops.hpp"
#include "autodiff/parameter.hpp"
#include "autodiff/tape.hpp"
using namespace asbi;
TEST(Smoke, Linear) {
  ad::Parameter w("w", core::Tensor::from({1, 2, 3, 4}, {2, 2}, core::DType::f64));
  core::Tensor x = core::Tensor::from({1, 1}, {1, 2}, core::DType::f64);
  ad::Tape tape;
  ad::Var y = ad::sum(ad::linear(x, w));
  EXPECT_DOUBLE_EQ(y.item(), 10);
  tape.backward(y);
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{1, 1, 1, 1}));
}
