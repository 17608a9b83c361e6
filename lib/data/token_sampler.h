// Training sequences from a TokenCorpus. Each file is cut into (N - 1) / T
// non-overlapping windows of T + 1 tokens (window w of a file is its tokens
// [w*T, w*T + T]): the first T are a sequence's inputs, the last T its
// targets. The corpus's W windows are the files' in file order (a window
// never spans two files, as in llm.c's loader; a file shorter than T + 1
// tokens gives none). Samples are addressed by a global index s (see
// epoch_order.h): epoch s / W, window perm_e[s % W], so a data-parallel rank
// reads its share of a global batch directly, and a resumed run needs only
// the step to read the same batches.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "data/epoch_order.h"
#include "data/token_file.h"

namespace dtrain {

class TokenSampler {
 public:
  // `corpus` must outlive the sampler. Throws InputError if no file holds
  // seq_len + 1 tokens. `vocab_size` > 0: fill refuses a token at or above it
  // (InputError naming the file and position), as TokenFile::check_vocab.
  TokenSampler(const TokenCorpus& corpus, int64_t seq_len, uint64_t seed, bool shuffle, int64_t vocab_size = 0,
               const char* vocab_key = "model.vocab_size");

  // Writes samples [first_sample, first_sample + count) into the first
  // `count` rows of x (inputs) and y (targets), both int32 of shape (>= count,
  // T). A batch may span epoch boundaries. Allocates nothing except the new
  // permutation when an epoch starts.
  void fill(int64_t first_sample, int64_t count, Tensor& x, Tensor& y);

  int64_t windows() const { return order_.n(); }  // W: samples per epoch
  int64_t seq_len() const { return seq_len_; }    // T
  int64_t epoch(int64_t sample) const { return order_.epoch(sample); }

 private:
  const TokenCorpus* corpus_;
  int64_t seq_len_;
  int64_t vocab_size_;
  const char* vocab_key_;  // the key vocab_size_ is, for the message
  std::vector<int64_t> ends_;  // windows in files [0, f], file by file
  data_detail::EpochOrder order_;
  std::vector<uint32_t> window_;  // one window's tokens (T + 1)
};

}  // namespace dtrain
