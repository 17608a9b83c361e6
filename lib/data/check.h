// Every problem of a config's data files at once, one line each (a missing
// training file and a malformed validation file are both reported): what
// `dtrain validate` checks beyond the config itself, and what the trainer
// reports when it opens the data. Reads each file whole (a token corpus's
// vocabulary scan, which training leaves to it: training checks each sample
// as it reads it).
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace dtrain {

// Empty when every data file of `cfg` reads and fits the model (a training
// file that is the validation file is checked once, as data.val).
std::vector<std::string> data_problems(const Config& cfg);

}  // namespace dtrain
