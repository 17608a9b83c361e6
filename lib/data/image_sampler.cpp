#include "data/image_sampler.h"

#include <string>

#include "core/error.h"

namespace dtrain {

namespace {

std::vector<double> per_channel(const std::vector<double>& v, const char* key, int64_t channels,
                                const std::string& images_path) {
  if (static_cast<int64_t>(v.size()) == channels) return v;
  if (v.size() == 1) return std::vector<double>(static_cast<size_t>(channels), v[0]);
  throw ConfigError(fmt::format(
      "{} has {} values but the images in '{}' have {} channels: give one value per channel, or "
      "one for all",
      key, v.size(), images_path, channels));
}

}  // namespace

ImageSampler::ImageSampler(const ImageDataset& data, std::vector<double> mean,
                           std::vector<double> stddev, uint64_t seed, bool shuffle)
    : data_(&data), order_(data.n(), seed, shuffle) {
  const int64_t C = data.channels();
  mean = per_channel(mean, "data.mean", C, data.images_path());
  stddev = per_channel(stddev, "data.std", C, data.images_path());
  for (int64_t c = 0; c < C; ++c)
    if (!(stddev[c] > 0))
      throw ConfigError(fmt::format("data.std[{}] = {}: must be positive", c, stddev[c]));
  table_f32_.resize(static_cast<size_t>(C * 256));
  table_f64_.resize(static_cast<size_t>(C * 256));
  table_bf16_.resize(static_cast<size_t>(C * 256));
  for (int64_t c = 0; c < C; ++c)
    for (int p = 0; p < 256; ++p) {
      double v = (p / 255.0 - mean[c]) / stddev[c];
      table_f64_[c * 256 + p] = v;
      table_f32_[c * 256 + p] = static_cast<float>(v);
      table_bf16_[c * 256 + p] = bf16(static_cast<float>(v));
    }
}

void ImageSampler::fill(int64_t first_sample, int64_t count, Tensor& x, Tensor& y) {
  const int64_t C = data_->channels(), H = data_->height(), W = data_->width();
  DTRAIN_CHECK(first_sample >= 0 && count >= 0, "fill({}, {})", first_sample, count);
  DTRAIN_CHECK(x.rank() == 4 && x.size(0) >= count && x.size(1) == C && x.size(2) == H &&
                   x.size(3) == W && x.device().is_cpu(),
               "x is {} on {}, expected (>= {}, {}, {}, {}) on cpu", x.shape().str(),
               x.device().str(), count, C, H, W);
  DTRAIN_CHECK(
      y.dtype() == DType::i32 && y.rank() == 1 && y.size(0) >= count && y.device().is_cpu(),
      "y is {} {} on {}, expected int32 (>= {}) on cpu", dtype_name(y.dtype()), y.shape().str(),
      y.device().str(), count);
  const int64_t HW = H * W, CHW = C * HW;
  const uint8_t* pixels = data_->pixels();  // (n, C, H, W)
  const uint8_t* labels = data_->labels();  // (n)
  int32_t* yp = y.data<int32_t>();          // (count)
  auto run = [&](auto zero) {
    using T = decltype(zero);
    T* xp = x.data<T>();  // (count, C, H, W)
    const T* table = this->table<T>();
    order_.for_each(first_sample, count, /*parallel=*/true, [&](int64_t row, int64_t image) {
      const uint8_t* src = pixels + image * CHW;
      T* dst = xp + row * CHW;
      for (int64_t c = 0; c < C; ++c) {
        const T* tc = table + c * 256;
        for (int64_t i = 0; i < HW; ++i) dst[c * HW + i] = tc[src[c * HW + i]];
      }
      yp[row] = labels[image];
    });
  };
  if (x.dtype() == DType::bf16)
    run(bf16{});  // bf16 mixed precision: the images in the activations' dtype
  else
    dispatch_float(x.dtype(), run);
}

}  // namespace dtrain
