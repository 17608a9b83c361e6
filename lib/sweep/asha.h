// Early stopping by asynchronous successive halving (ASHA; Li et al., "A
// System for Massively Parallel Hyperparameter Tuning", 2020), in its
// stopping form (as Ray Tune's ASHA scheduler): trials run on; when one
// reaches a rung (a step count), its metric there is recorded, and it goes on
// only if it is among the best max(1, floor(n / reduction)) of the n values
// recorded at that rung so far, itself included. The first trial at a rung
// always goes on; which trials a later one is compared with depends on the
// order they arrive in (run with concurrency = 1 for a reproducible sweep).
#pragma once

#include <cstdint>
#include <map>
#include <vector>

namespace dtrain::sweep {

class Asha {
 public:
  Asha(std::vector<int64_t> rungs, double reduction, bool maximize)
      : rungs_(std::move(rungs)), reduction_(reduction), maximize_(maximize) {}

  const std::vector<int64_t>& rungs() const { return rungs_; }
  // Adds a value recorded earlier (a resumed sweep) without deciding.
  void record(int64_t rung, double value) { seen_[rung].push_back(value); }
  // Records `value` at `rung` and says whether the trial goes on. A NaN is
  // the worst value there is.
  bool decide(int64_t rung, double value);

 private:
  bool better(double a, double b) const;  // a strictly better than b
  std::vector<int64_t> rungs_;
  double reduction_;
  bool maximize_;
  std::map<int64_t, std::vector<double>> seen_;
};

}  // namespace dtrain::sweep
