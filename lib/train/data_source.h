// The trainer's view of a dataset: samples addressed by a global index, filled
// into preallocated (x, y) tensors. Wraps the token and image samplers of
// lib/data so the step loop is the same for the GPT and the CNN.
#pragma once

#include <memory>
#include <string>

#include "config/config.h"
#include "core/tensor.h"

namespace dtrain {

class DataSource {
 public:
  virtual ~DataSource() = default;
  // Samples in one pass (one epoch) over the data.
  virtual int64_t size() const = 0;
  // Writes samples [first, first + count) into x and y (leading dimension >= count).
  virtual void fill(int64_t first, int64_t count, Tensor& x, Tensor& y) = 0;
  // What the data holds, in one line ("3 files, 774 tokens, 45 sequences of
  // 17 tokens"): checkpoints record it, and a resume compares.
  virtual std::string describe() const = 0;
};

struct DataSources {
  std::unique_ptr<DataSource> train;
  std::unique_ptr<DataSource> val;  // never shuffled
};

// Opens and checks the data files of `cfg` against its model (vocabulary,
// image shape, classes). Throws InputError naming the file on any problem.
// When data.train lists one file per data-parallel replica, `replica` (the
// rank's data-parallel coordinate) picks its own: no other is opened.
DataSources open_data(const Config& cfg, int64_t seq_len, int replica = 0);
// True when every data-parallel replica reads a file of its own.
inline bool per_replica_data(const Config& cfg) { return cfg.model.token_model() && cfg.data.train.size() > 1; }

}  // namespace dtrain
