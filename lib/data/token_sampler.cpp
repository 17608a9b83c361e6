#include "data/token_sampler.h"

#include "core/error.h"

namespace dtrain {

namespace {

int64_t count_windows(const TokenFile& file, int64_t seq_len) {
  DTRAIN_CHECK(seq_len > 0, "seq_len {}", seq_len);
  int64_t w = (file.size() - 1) / seq_len;
  if (w == 0)
    throw InputError(
        fmt::format("'{}' has {} tokens, too few for one sequence of seq_len + 1 = {} tokens",
                    file.path(), file.size(), seq_len + 1));
  return w;
}

void check_batch_tensor(const Tensor& t, const char* name, int64_t count, int64_t seq_len) {
  DTRAIN_CHECK(t.dtype() == DType::i32 && t.rank() == 2 && t.size(0) >= count &&
                   t.size(1) == seq_len && t.device().is_cpu(),
               "{} is {} {} on {}, expected int32 (>= {}, {}) on cpu", name, dtype_name(t.dtype()),
               t.shape().str(), t.device().str(), count, seq_len);
}

}  // namespace

TokenSampler::TokenSampler(const TokenFile& file, int64_t seq_len, uint64_t seed, bool shuffle)
    : file_(&file), seq_len_(seq_len), order_(count_windows(file, seq_len), seed, shuffle) {}

void TokenSampler::fill(int64_t first_sample, int64_t count, Tensor& x, Tensor& y) {
  DTRAIN_CHECK(first_sample >= 0 && count >= 0, "fill({}, {})", first_sample, count);
  check_batch_tensor(x, "x", count, seq_len_);
  check_batch_tensor(y, "y", count, seq_len_);
  const int64_t T = seq_len_;
  const uint16_t* tokens = file_->tokens();
  int32_t* xp = x.data<int32_t>();  // (count, T)
  int32_t* yp = y.data<int32_t>();  // (count, T)
  // A batch is B*T small integer copies: a memory-bound few microseconds, so
  // it stays on one thread.
  order_.for_each(first_sample, count, /*parallel=*/false, [&](int64_t row, int64_t window) {
    const uint16_t* src = tokens + window * T;  // (T + 1)
    int32_t* xr = xp + row * T;
    int32_t* yr = yp + row * T;
    for (int64_t t = 0; t < T; ++t) {
      xr[t] = src[t];
      yr[t] = src[t + 1];
    }
  });
}

}  // namespace dtrain
