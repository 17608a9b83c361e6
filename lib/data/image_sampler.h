// Normalised training batches from an ImageDataset. Samples are addressed by
// a global index s counted from the start of training (see epoch_order.h):
// epoch s / n, image perm_e[s % n], so a data-parallel rank reads its share of
// a global batch directly and a resumed run needs only the step. Pixels map
// to (p / 255 - mean[c]) / std[c] through a 256-entry table per channel,
// computed once in double: the same value in f32 and f64 runs, up to rounding.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/tensor.h"
#include "data/epoch_order.h"
#include "data/image_dataset.h"

namespace dtrain {

class ImageSampler {
 public:
  // `data` must outlive the sampler. mean and std hold one value per channel,
  // or one value for every channel; std must be positive (ConfigError naming
  // data.mean / data.std otherwise).
  ImageSampler(const ImageDataset& data, std::vector<double> mean, std::vector<double> std,
               uint64_t seed, bool shuffle);

  // Writes samples [first_sample, first_sample + count) into the first
  // `count` rows of x (>= count, C, H, W), f32, f64 or bf16, and y (>= count),
  // int32 class labels. A batch may span epoch boundaries. Allocates nothing
  // except the new permutation when an epoch starts; OpenMP over the samples.
  void fill(int64_t first_sample, int64_t count, Tensor& x, Tensor& y);

  int64_t size() const { return order_.n(); }  // samples per epoch
  int64_t epoch(int64_t sample) const { return order_.epoch(sample); }

 private:
  template <class T>
  const T* table() const {
    if constexpr (std::is_same_v<T, float>)
      return table_f32_.data();
    else if constexpr (std::is_same_v<T, bf16>)
      return table_bf16_.data();
    else
      return table_f64_.data();
  }

  const ImageDataset* data_;
  std::vector<float> table_f32_;   // (C, 256)
  std::vector<double> table_f64_;  // (C, 256)
  std::vector<bf16> table_bf16_;   // (C, 256): the fp32 values rounded (bf16 mixed precision)
  data_detail::EpochOrder order_;
};

}  // namespace dtrain
