// The order in which a sampler visits the n items of a dataset, epoch after
// epoch. Samples are addressed by a global index s counted from the start of
// training (s = step * global_batch + i): s belongs to epoch e = s / n and is
// item perm_e[s % n], where perm_e is random_permutation(hash_combine(seed, e))
// (or the identity without shuffling). So any data-parallel rank can read
// exactly its share of a global batch, and resuming needs only the step.
// Internal to lib/data: shared by the token and image samplers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace dtrain::data_detail {

class EpochOrder {
 public:
  EpochOrder(int64_t n, uint64_t seed, bool shuffle) : n_(n), seed_(seed), shuffle_(shuffle) {}

  int64_t n() const { return n_; }
  int64_t epoch(int64_t sample) const { return sample / n_; }

  // Calls f(row, item) for the samples [first, first + count), where row =
  // s - first; sequential within each epoch's segment when `parallel` is off,
  // an OpenMP loop over the segment when it is on (f must then be thread safe).
  template <class F>
  void for_each(int64_t first, int64_t count, bool parallel, F&& f) {
    int64_t s = first;
    const int64_t end = first + count;
    while (s < end) {
      const int64_t e = s / n_;
      const int64_t seg_end = std::min(end, (e + 1) * n_);
      select(e);
      const int64_t base = e * n_;
      const int64_t* perm = shuffle_ ? perm_.data() : nullptr;
#pragma omp parallel for schedule(static) if (parallel)
      for (int64_t t = s; t < seg_end; ++t) f(t - first, perm ? perm[t - base] : t - base);
      s = seg_end;
    }
  }

 private:
  // Makes perm_ the order of epoch e (reuses perm_'s memory: no allocation
  // after the first epoch).
  void select(int64_t e);

  int64_t n_;
  uint64_t seed_;
  bool shuffle_;
  int64_t perm_epoch_ = -1;
  std::vector<int64_t> perm_;
};

}  // namespace dtrain::data_detail
