// Checks that involve more than one key, and the values derived from others
// (batch sizes, seq_len, decay_steps, output directories). Single-key checks
// (type, range, choices) happen while reading, in parse.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/problems.h"

namespace dtrain::config {

// The smallest vocabulary >= `vocab` that `tp` ranks split evenly, in rows
// of lcm(64, tp) (GEMM-friendly): what a "not divisible by parallel.tp" error
// suggests.
int64_t padded_vocab(int64_t vocab, int64_t tp);

// The data keys that must name a file for a model type ("gpt": data.train and
// data.val; "cnn": the four image and label files): what a run reads, and
// what `dtrain plan`, which reads no data, fills in when a config leaves
// them out.
const std::vector<std::string>& required_data_paths(const std::string& model_type);

// One per schema() entry, after reading: where the value came from, and
// whether it was rejected (checks between keys then skip it rather than
// pile a second message onto the first).
struct KeyState {
  Origin origin;
  bool bad = false;
};

// `c` holds every key's value (the default where a key was unset or bad).
// `name` names the config in messages; an unset log.out_dir becomes
// runs/<run_name>.
void validate_and_resolve(Config& c, const std::vector<KeyState>& keys, const std::string& name,
                          const std::string& run_name, int world_size,
                          const AutoLayout& auto_layout, Problems& problems);

}  // namespace dtrain::config
