// Tensor handles, views, copies, host access, and shape arithmetic.
#include <gtest/gtest.h>

#include "test_util.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "core/memory.hpp"
#include "core/tensor.hpp"

namespace asbi::core {
namespace {

using asbi::test_util::expect_error_naming;

std::int64_t allocations() { return memory_stats().allocations; }

TEST(Shape, BasicsAndErrors) {
  const Shape s{2, 3, 4};
  EXPECT_EQ(s.rank(), 3);
  EXPECT_EQ(s.numel(), 24);
  EXPECT_EQ(s.rows(), 2);
  EXPECT_EQ(s.cols(), 12);
  EXPECT_EQ(s.last(), 4);
  EXPECT_EQ(s.outer(1), 2);
  EXPECT_EQ(s.inner(1), 4);
  EXPECT_EQ(s.normalize_axis(-1), 2);
  EXPECT_EQ(s.with(-1, 7), (Shape{2, 3, 7}));
  EXPECT_EQ(s.str(), "[2, 3, 4]");
  EXPECT_EQ(Shape{}.numel(), 1);
  EXPECT_EQ(Shape{}.str(), "[]");
  EXPECT_EQ((Shape{0, 3}).numel(), 0);
  EXPECT_NE(s, (Shape{2, 3}));
  expect_error_naming<ShapeError>([&] { s.normalize_axis(3); }, {"3", "[2, 3, 4]"});
  EXPECT_THROW(s.normalize_axis(-4), ShapeError);
  EXPECT_THROW((Shape{1, 2, 3, 4, 5}), ShapeError);
  EXPECT_THROW((Shape{2, -1}), ShapeError);
  const std::vector<std::int64_t> dims{5, 6};
  EXPECT_EQ(Shape(dims.begin(), dims.end()), (Shape{5, 6}));
}

TEST(Tensor, ZerosFullFrom) {
  const Tensor z = Tensor::zeros({2, 3});
  EXPECT_TRUE(z.defined());
  EXPECT_EQ(z.dtype(), DType::f32);
  EXPECT_EQ(z.device(), Device::cpu);
  EXPECT_EQ(z.bytes(), 24u);
  EXPECT_EQ(z.to_vector(), std::vector<double>(6, 0.0));

  const Tensor f = Tensor::full({4}, 2.5, DType::f64);
  EXPECT_EQ(f.dtype(), DType::f64);
  EXPECT_EQ(f.bytes(), 32u);
  EXPECT_EQ(f.to_vector(), std::vector<double>(4, 2.5));

  const Tensor a = Tensor::from({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64);
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
  EXPECT_EQ(a.dim(-1), 3);
  EXPECT_EQ(a.to_vector(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(a.data<double>()[4], 5.0);

  // float32 storage rounds each value once.
  const Tensor b = Tensor::from({0.1, 1e-3}, {2});
  EXPECT_EQ(b.at(0), static_cast<double>(0.1f));
  EXPECT_EQ(b.at(1), static_cast<double>(1e-3f));

  expect_error_naming<ShapeError>([] { Tensor::from({1, 2, 3}, {2, 2}); }, {"[2, 2]", "4", "3"});
  EXPECT_FALSE(Tensor().defined());
  EXPECT_EQ(Tensor::zeros({0, 5}).numel(), 0);
}

TEST(Tensor, DataChecksTheElementType) {
  const Tensor t = Tensor::zeros({2, 2}, DType::f64);
  EXPECT_NO_THROW(t.data<double>());
  expect_error_naming<DtypeError>([&] { t.data<float>(); }, {"float32", "float64", "[2, 2]"});
}

TEST(Tensor, WrapViewsCallerMemoryWithoutAllocating) {
  std::vector<double> buf{1, 2, 3, 4, 5, 6};
  const std::int64_t before = allocations();
  const Tensor t = Tensor::wrap(buf.data(), {3, 2});
  EXPECT_EQ(allocations(), before);
  EXPECT_EQ(t.dtype(), DType::f64);
  EXPECT_EQ(t.data<double>(), buf.data());
  buf[3] = 40;
  EXPECT_EQ(t.at(3), 40.0);
  t.data<double>()[0] = -1;
  EXPECT_EQ(buf[0], -1.0);

  std::vector<float> fbuf{1.5f, 2.5f};
  EXPECT_EQ(Tensor::wrap(fbuf.data(), {2}).dtype(), DType::f32);

  // Read-only caller data is wrapped too: the element type is that of the pointee.
  const std::vector<float> cbuf{7, 8, 9};
  const Tensor c = Tensor::wrap(cbuf.data(), {3});
  EXPECT_EQ(c.dtype(), DType::f32);
  EXPECT_EQ(c.to_vector(), (std::vector<double>{7, 8, 9}));
  EXPECT_EQ(allocations(), before);
}

TEST(Tensor, RowsAreCheapViewsSharingData) {
  Tensor t = Tensor::from({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {4, 3}, DType::f64);
  const std::int64_t before = allocations();
  const MemoryStats stats = memory_stats();
  Tensor mid = t.rows(1, 3);
  Tensor empty = t.rows(4, 4);
  EXPECT_EQ(allocations(), before);
  EXPECT_EQ(memory_stats().live_bytes, stats.live_bytes);
  EXPECT_EQ(mid.shape(), (Shape{2, 3}));
  EXPECT_EQ(mid.to_vector(), (std::vector<double>{3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(empty.numel(), 0);
  mid.data<double>()[0] = 30;
  EXPECT_EQ(t.at(3), 30.0);
  // A view of a view, and of a 3-D tensor: one row is all trailing dimensions.
  EXPECT_EQ(mid.rows(1, 2).to_vector(), (std::vector<double>{6, 7, 8}));
  const Tensor cube = t.reshape({2, 2, 3});
  EXPECT_EQ(cube.rows(1, 2).to_vector(), (std::vector<double>{6, 7, 8, 9, 10, 11}));
  // The view keeps the storage alive after the parent handle goes.
  t = Tensor();
  EXPECT_EQ(mid.at(5), 8.0);

  EXPECT_THROW(mid.rows(-1, 1), ShapeError);
  EXPECT_THROW(mid.rows(1, 0), ShapeError);
  expect_error_naming<ShapeError>([&] { mid.rows(0, 3); }, {"[0, 3)", "[2, 3]"});
  EXPECT_THROW(Tensor::zeros({}).rows(0, 1), ShapeError);
}

TEST(Tensor, ReshapeSharesDataAndChecksTheCount) {
  Tensor t = Tensor::from({1, 2, 3, 4, 5, 6}, {2, 3});
  const std::int64_t before = allocations();
  Tensor r = t.reshape({3, 2});
  EXPECT_EQ(allocations(), before);
  EXPECT_EQ(r.shape(), (Shape{3, 2}));
  r.data<float>()[5] = 60;
  EXPECT_EQ(t.at(5), 60.0);
  EXPECT_EQ(t.reshape({6}).shape(), (Shape{6}));
  EXPECT_EQ(t.reshape({1, 2, 1, 3}).rank(), 4);
  expect_error_naming<ShapeError>([&] { t.reshape({4, 2}); }, {"[2, 3]", "[4, 2]", "6", "8"});
}

TEST(Tensor, CloneIsDeep) {
  Tensor t = Tensor::from({1, 2, 3}, {3}, DType::f64);
  const std::int64_t before = allocations();
  Tensor c = t.clone();
  EXPECT_EQ(allocations(), before + 1);
  EXPECT_NE(c.data<double>(), t.data<double>());
  EXPECT_EQ(c.to_vector(), t.to_vector());
  c.data<double>()[0] = 100;
  EXPECT_EQ(t.at(0), 1.0);
  // A clone of a view copies only the view.
  Tensor m = Tensor::from({1, 2, 3, 4, 5, 6}, {3, 2}).rows(1, 2).clone();
  EXPECT_EQ(m.to_vector(), (std::vector<double>{3, 4}));
}

TEST(Tensor, CopyFromChecksShapeAndDtype) {
  Tensor dst = Tensor::zeros({2, 2});
  dst.copy_from(Tensor::from({1, 2, 3, 4}, {2, 2}));
  EXPECT_EQ(dst.to_vector(), (std::vector<double>{1, 2, 3, 4}));
  EXPECT_THROW(dst.copy_from(Tensor::zeros({4})), ShapeError);
  expect_error_naming<ShapeError>([&] { dst.copy_from(Tensor::zeros({2, 2}, DType::f64)); },
                                  {"float32", "float64"});
}

TEST(Tensor, DtypeRoundTrip) {
  // Values exact in float32 survive float64 → float32 → float64 unchanged.
  const std::vector<double> exact{0, -1.5, 0.25, 1024, 3.0517578125e-05, -7};
  const Tensor d = Tensor::from(exact, {2, 3}, DType::f64);
  const Tensor f = d.to(DType::f32);
  EXPECT_EQ(f.dtype(), DType::f32);
  EXPECT_EQ(f.shape(), d.shape());
  const Tensor back = f.to(DType::f64);
  EXPECT_EQ(back.to_vector(), exact);
  // Others round to the nearest float32.
  const Tensor third = Tensor::from({1.0 / 3}, {1}, DType::f64).to(DType::f32);
  EXPECT_EQ(third.item(), static_cast<double>(static_cast<float>(1.0 / 3)));
  // Converting to the dtype a tensor already has is free and shares storage.
  const std::int64_t before = allocations();
  EXPECT_EQ(d.to(DType::f64).data<double>(), d.data<double>());
  EXPECT_EQ(d.to(Device::cpu).data<double>(), d.data<double>());
  EXPECT_EQ(allocations(), before);
}

TEST(Tensor, ItemAndAtCheckBounds) {
  const Tensor one = Tensor::full({1, 1}, 4.5, DType::f64);
  EXPECT_EQ(one.item(), 4.5);
  const Tensor t = Tensor::from({1, 2, 3}, {3});
  EXPECT_EQ(t.at(2), 3.0);
  expect_error_naming<ShapeError>([&] { t.item(); }, {"[3]"});
  expect_error_naming<ShapeError>([&] { t.at(3); }, {"3", "[3]"});
  EXPECT_THROW(t.at(-1), ShapeError);
  EXPECT_THROW(Tensor::zeros({0}).item(), ShapeError);
}

TEST(BroadcastShapes, Cases) {
  struct Case {
    Shape a, b, out;
  };
  const Case cases[] = {
      {{3, 4}, {3, 4}, {3, 4}},          {{3, 4}, {4}, {3, 4}},
      {{4}, {3, 4}, {3, 4}},             {{3, 4}, {3, 1}, {3, 4}},
      {{3, 4}, {1}, {3, 4}},             {{3, 1}, {1, 4}, {3, 4}},
      {{2, 3, 4}, {3, 4}, {2, 3, 4}},    {{2, 1, 4}, {3, 1}, {2, 3, 4}},
      {{2, 3, 1, 4}, {3, 2, 1}, {2, 3, 2, 4}}, {{5}, {}, {5}},
      {{}, {}, {}},                      {{0, 3}, {3}, {0, 3}},
      {{1, 0}, {4, 1}, {4, 0}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(broadcast_shapes(c.a, c.b), c.out) << c.a << " with " << c.b;
    EXPECT_EQ(broadcast_shapes(c.b, c.a), c.out) << c.b << " with " << c.a;
  }
  expect_error_naming<ShapeError>([] { broadcast_shapes({3, 4}, {3}); },
                                  {"[3, 4]", "[3]", "4 vs 3"});
  expect_error_naming<ShapeError>([] { broadcast_shapes({2, 3, 4}, {2, 1, 5}); },
                                  {"[2, 3, 4]", "[2, 1, 5]"});
  EXPECT_THROW(broadcast_shapes({2, 1}, {3, 1}), ShapeError);
}

TEST(Checks, CompatibleAndShape) {
  const Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({3}, DType::f64);
  expect_error_naming<DtypeError>([&] { check_compatible("op", a, b); },
                                  {"op", "float32", "[2, 3]", "float64", "[3]"});
  EXPECT_THROW(check_compatible("op", a, Tensor()), ValueError);
  EXPECT_NO_THROW(check_compatible("op", a, Tensor::zeros({7})));
  expect_error_naming<ShapeError>([&] { check_shape("op", "bias", a, {3}); },
                                  {"op", "bias", "[3]", "[2, 3]"});
}

}  // namespace
}  // namespace asbi::core
