#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "core/rng.h"
#include "core/tensor.h"

using namespace dtrain;

TEST_CASE("tensor views share storage and check bounds") {
  Tensor t = Tensor::zeros(Shape{4, 3}, DType::f32);
  CHECK(t.numel() == 12);
  CHECK(t.bytes() == 48);
  Tensor rows = t.narrow0(1, 3);
  CHECK(rows.shape() == Shape{2, 3});
  rows.data<float>()[0] = 5.f;
  CHECK(t.data<float>()[3] == 5.f);
  CHECK(t.flat_range(3, 2).data<float>()[0] == 5.f);
  CHECK_THROWS_AS(t.view(Shape{5, 3}), InternalError);
  CHECK_THROWS_AS(t.narrow0(2, 5), InternalError);
  CHECK_THROWS_AS(t.data<double>(), InternalError);
}

TEST_CASE("a CUDA tensor without a GPU (or without the backend) is a clear error naming the device") {
  CHECK_THROWS_WITH_AS(Tensor::empty(Shape{2}, DType::f32, Device::cuda(0)),
                       doctest::Contains("cuda:0"), RuntimeError);
}

TEST_CASE("counter RNG is a pure function of key and counter") {
  CounterRng a(42), b(42), c(43);
  uint64_t x = a.next_u64();
  CHECK(x == b.next_u64());
  CHECK(x != c.next_u64());
  CHECK(CounterRng(42, 5).next_u64() == CounterRng(42, 5).next_u64());
  double mean = 0, var = 0;
  CounterRng n(7);
  const int k = 20000;
  for (int i = 0; i < k; ++i) {
    double v = n.normal();
    mean += v;
    var += v * v;
  }
  mean /= k;
  var = var / k - mean * mean;
  CHECK(std::abs(mean) < 0.03);
  CHECK(std::abs(var - 1.0) < 0.05);
}

TEST_CASE("random permutations are permutations and depend on the key") {
  std::vector<int64_t> p, q;
  random_permutation(1, p, 1000);
  random_permutation(2, q, 1000);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) CHECK(sorted[i] == i);
  CHECK(p != q);
}
