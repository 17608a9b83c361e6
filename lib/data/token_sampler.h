// Training sequences from a TokenFile. The file is cut into W = (N - 1) / T
// non-overlapping windows of T + 1 tokens (window w is tokens [w*T, w*T + T]):
// the first T are a sequence's inputs, the last T its targets. Samples are
// addressed by a global index s (see epoch_order.h): epoch s / W, window
// perm_e[s % W], so a data-parallel rank reads its share of a global batch
// directly, and a resumed run needs only the step to read the same batches.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "data/epoch_order.h"
#include "data/token_file.h"

namespace dtrain {

class TokenSampler {
 public:
  // `file` must outlive the sampler. Throws InputError if the file holds
  // fewer than seq_len + 1 tokens.
  TokenSampler(const TokenFile& file, int64_t seq_len, uint64_t seed, bool shuffle);

  // Writes samples [first_sample, first_sample + count) into the first
  // `count` rows of x (inputs) and y (targets), both int32 of shape (>= count,
  // T). A batch may span epoch boundaries. Allocates nothing except the new
  // permutation when an epoch starts.
  void fill(int64_t first_sample, int64_t count, Tensor& x, Tensor& y);

  int64_t windows() const { return order_.n(); }  // W: samples per epoch
  int64_t seq_len() const { return seq_len_; }    // T
  int64_t epoch(int64_t sample) const { return order_.epoch(sample); }

 private:
  const TokenFile* file_;
  int64_t seq_len_;
  data_detail::EpochOrder order_;
};

}  // namespace dtrain
