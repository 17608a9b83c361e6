#include "data/token_sampler.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace dtrain {

namespace {

// Windows in files [0, f], file by file.
std::vector<int64_t> window_ends(const TokenCorpus& corpus, int64_t seq_len) {
  DTRAIN_CHECK(seq_len > 0, "seq_len {}", seq_len);
  std::vector<int64_t> ends;
  int64_t total = 0, longest = 0;
  for (const TokenFile& f : corpus.files()) {
    total += (f.size() - 1) / seq_len;
    ends.push_back(total);
    longest = std::max(longest, f.size());
  }
  if (total == 0) {
    if (corpus.files().size() == 1)
      throw InputError(fmt::format("'{}' has {} tokens, too few for one sequence of seq_len + 1 = {} tokens",
                                   corpus.files()[0].path(), longest, seq_len + 1));
    throw InputError(fmt::format("'{}': none of its {} files holds one sequence of seq_len + 1 = {} tokens (the "
                                 "longest has {})",
                                 corpus.pattern(), corpus.files().size(), seq_len + 1, longest));
  }
  return ends;
}

void check_batch_tensor(const Tensor& t, const char* name, int64_t count, int64_t seq_len) {
  DTRAIN_CHECK(t.dtype() == DType::i32 && t.rank() == 2 && t.size(0) >= count &&
                   t.size(1) == seq_len && t.device().is_cpu(),
               "{} is {} {} on {}, expected int32 (>= {}, {}) on cpu", name, dtype_name(t.dtype()),
               t.shape().str(), t.device().str(), count, seq_len);
}

}  // namespace

TokenSampler::TokenSampler(const TokenCorpus& corpus, int64_t seq_len, uint64_t seed, bool shuffle,
                           int64_t vocab_size, const char* vocab_key)
    : corpus_(&corpus),
      seq_len_(seq_len),
      vocab_size_(vocab_size),
      vocab_key_(vocab_key),
      ends_(window_ends(corpus, seq_len)),
      order_(ends_.back(), seed, shuffle),
      window_(static_cast<size_t>(seq_len + 1)) {}

void TokenSampler::fill(int64_t first_sample, int64_t count, Tensor& x, Tensor& y) {
  DTRAIN_CHECK(first_sample >= 0 && count >= 0, "fill({}, {})", first_sample, count);
  check_batch_tensor(x, "x", count, seq_len_);
  check_batch_tensor(y, "y", count, seq_len_);
  const int64_t T = seq_len_;
  int32_t* xp = x.data<int32_t>();  // (count, T)
  int32_t* yp = y.data<int32_t>();  // (count, T)
  // A batch is B reads of T + 1 tokens (from the page cache, usually) and B*T
  // small integer copies: a few microseconds a sample, so it stays on one
  // thread. The loop body is an OpenMP region: a problem is kept and thrown
  // after it.
  std::string problem;
  order_.for_each(first_sample, count, /*parallel=*/false, [&](int64_t row, int64_t window) {
    if (!problem.empty()) return;
    const auto f = static_cast<size_t>(std::upper_bound(ends_.begin(), ends_.end(), window) - ends_.begin());
    const int64_t first_token = (window - (f == 0 ? 0 : ends_[f - 1])) * T;
    try {
      corpus_->read(f, first_token, T + 1, window_.data());
    } catch (const InputError& e) {  // the file changed while training
      problem = e.what();
      return;
    }
    const uint32_t* src = window_.data();
    if (vocab_size_ > 0) {
      uint32_t max = 0;
      for (int64_t t = 0; t <= T; ++t) max = std::max(max, src[t]);
      if (int64_t{max} >= vocab_size_) {
        const int64_t at = std::find_if(src, src + T + 1, [&](uint32_t v) { return int64_t{v} >= vocab_size_; }) - src;
        problem = fmt::format("'{}': token {} at position {} is out of range for {} = {}",
                              corpus_->files()[f].path(), src[at], first_token + at, vocab_key_, vocab_size_);
        return;
      }
    }
    int32_t* xr = xp + row * T;
    int32_t* yr = yp + row * T;
    for (int64_t t = 0; t < T; ++t) {  // below vocab_size (an int32) where it is checked
      xr[t] = static_cast<int32_t>(src[t]);
      yr[t] = static_cast<int32_t>(src[t + 1]);
    }
  });
  if (!problem.empty()) throw InputError(problem);
}

}  // namespace dtrain
