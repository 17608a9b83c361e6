#include "data/image_sampler.h"

#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <vector>

#include "core/rng.h"
#include "data/data_files.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

struct Images {
  TempDir dir;
  std::string images = dir.file("img"), labels = dir.file("lbl");
  ImageDataset data;
  Images(uint32_t n, uint32_t c, uint32_t h, uint32_t w, uint32_t classes)
      : data((write_images(images, labels, n, c, h, w, classes), images), labels) {}
};

// The image index of each sample in [first, first + count), recovered from
// its label (labels are i % classes with classes >= n, so label = index).
std::vector<int64_t> images_of(ImageSampler& s, const ImageDataset& d, int64_t first,
                               int64_t count) {
  Tensor x = Tensor::empty(Shape{count, d.channels(), d.height(), d.width()}, DType::f32);
  Tensor y = Tensor::empty(Shape{count}, DType::i32);
  s.fill(first, count, x, y);
  return {y.data<int32_t>(), y.data<int32_t>() + count};
}

template <class T>
std::vector<T> values(const Tensor& t) {
  return {t.data<T>(), t.data<T>() + t.numel()};
}

}  // namespace

TEST_CASE("pixels are normalised as (p / 255 - mean) / std, in f32 and f64") {
  Images im(4, 1, 3, 5, 10);
  const int64_t CHW = 15;
  ImageSampler s(im.data, {0.5}, {0.25}, 0, false);
  CHECK(s.size() == 4);
  Tensor x64 = Tensor::empty(Shape{4, 1, 3, 5}, DType::f64);
  Tensor x32 = Tensor::empty(Shape{4, 1, 3, 5}, DType::f32);
  Tensor y = Tensor::empty(Shape{4}, DType::i32);
  s.fill(0, 4, x64, y);
  s.fill(0, 4, x32, y);
  for (int64_t k = 0; k < 4 * CHW; ++k) {
    double p = (7 * k + 3) % 256;
    double expect = (p / 255.0 - 0.5) / 0.25;
    CHECK(x64.data<double>()[k] == expect);
    CHECK(x32.data<float>()[k] == static_cast<float>(expect));
  }
  CHECK(x64.data<double>()[0] == doctest::Approx((3 / 255.0 - 0.5) * 4));
  for (int i = 0; i < 4; ++i) CHECK(y.data<int32_t>()[i] == i);
}

TEST_CASE("3-channel images use each channel's mean and std") {
  Images im(2, 3, 2, 2, 10);
  std::vector<double> mean = {0.1, 0.5, 0.9}, std = {0.2, 0.3, 0.4};
  ImageSampler s(im.data, mean, std, 0, false);
  Tensor x = Tensor::empty(Shape{2, 3, 2, 2}, DType::f64);
  Tensor y = Tensor::empty(Shape{2}, DType::i32);
  s.fill(0, 2, x, y);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t p = 0; p < 4; ++p) {
        int64_t k = i * 12 + c * 4 + p;
        double pixel = (7 * k + 3) % 256;
        CHECK(x.data<double>()[k] == (pixel / 255.0 - mean[c]) / std[c]);
      }

  // One value applies to every channel.
  ImageSampler one(im.data, {0.5}, {0.5}, 0, false);
  one.fill(0, 1, x, y);
  CHECK(x.data<double>()[4] == ((7 * 4 + 3) / 255.0 - 0.5) / 0.5);
  CHECK(x.data<double>()[8] == ((7 * 8 + 3) / 255.0 - 0.5) / 0.5);
}

TEST_CASE("mean and std must match the channels and std must be positive") {
  Images im(2, 3, 2, 2, 10);
  CHECK_THROWS_AS(ImageSampler(im.data, {0.1, 0.2}, {1.0}, 0, false), ConfigError);
  CHECK_THROWS_WITH_AS(ImageSampler(im.data, {0.1}, {1.0, 2.0}, 0, false),
                       doctest::Contains("data.std has 2 values"), ConfigError);
  CHECK_THROWS_WITH_AS(ImageSampler(im.data, {0.1}, {1.0, 0.0, 1.0}, 0, false),
                       doctest::Contains("data.std[1] = 0"), ConfigError);
}

TEST_CASE("image samples: sequential without shuffle, a permutation per epoch with it") {
  const int64_t n = 20;
  Images im(n, 1, 2, 3, n);
  ImageSampler seq(im.data, {0.0}, {1.0}, 5, false);
  std::vector<int64_t> expect;
  for (int64_t i = 0; i < 45; ++i) expect.push_back(i % n);
  CHECK(images_of(seq, im.data, 0, 45) == expect);

  ImageSampler s(im.data, {0.0}, {1.0}, 5, true), same(im.data, {0.0}, {1.0}, 5, true),
      other(im.data, {0.0}, {1.0}, 6, true);
  for (int64_t e = 0; e < 3; ++e) {
    std::vector<int64_t> perm;
    random_permutation(hash_combine(5, static_cast<uint64_t>(e)), perm, n);
    CHECK(images_of(s, im.data, e * n, n) == perm);
  }
  CHECK(images_of(s, im.data, 0, n) != images_of(s, im.data, n, n));
  CHECK(images_of(same, im.data, 7, 50) == images_of(s, im.data, 7, 50));
  CHECK(images_of(other, im.data, 7, 50) != images_of(s, im.data, 7, 50));
}

TEST_CASE("image batches do not depend on the call split or the thread count") {
  Images im(10, 3, 4, 4, 10);
  ImageSampler s(im.data, {0.2}, {0.3}, 11, true);
  Tensor x = Tensor::empty(Shape{8, 3, 4, 4}, DType::f32), y = Tensor::empty(Shape{8}, DType::i32);
  s.fill(6, 8, x, y);  // spans the end of epoch 0

  ImageSampler t(im.data, {0.2}, {0.3}, 11, true);
  Tensor x2 = Tensor::empty(Shape{8, 3, 4, 4}, DType::f32),
         y2 = Tensor::empty(Shape{8}, DType::i32);
  Tensor x2b = x2.narrow0(4, 8), y2b = y2.narrow0(4, 8);
  Tensor x2a = x2.narrow0(0, 4), y2a = y2.narrow0(0, 4);
  t.fill(10, 4, x2b, y2b);  // epoch 1 first, then back to epoch 0
  t.fill(6, 4, x2a, y2a);
  CHECK(values<float>(x) == values<float>(x2));
  CHECK(values<int32_t>(y) == values<int32_t>(y2));

  int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  ImageSampler u(im.data, {0.2}, {0.3}, 11, true);
  u.fill(6, 8, x2, y2);
  omp_set_num_threads(threads);
  CHECK(values<float>(x) == values<float>(x2));
  CHECK(values<int32_t>(y) == values<int32_t>(y2));

  Tensor bad = Tensor::empty(Shape{8, 1, 4, 4}, DType::f32);
  CHECK_THROWS_AS(s.fill(0, 8, bad, y), InternalError);
  CHECK_THROWS_AS(s.fill(0, 9, x, y), InternalError);
  Tensor ints = Tensor::empty(Shape{8, 3, 4, 4}, DType::i32);
  CHECK_THROWS_AS(s.fill(0, 8, ints, y), InternalError);
}
