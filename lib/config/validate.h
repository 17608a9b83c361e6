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
