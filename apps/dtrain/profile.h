// `dtrain profile`: warm-up steps, then measured steps with every scope and
// collective recorded; each rank summarises itself into a fixed-size array of
// doubles, the world all-gathers them, and rank 0 prints the breakdown (per
// stage and layer, per layer kind, per communication group, memory, MFU) and
// writes <out>/profile.json and the merged Chrome trace <out>/trace.json.
#pragma once

#include <cstdint>
#include <string>

#include "train/profiler.h"
#include "train/trainer.h"

namespace dtrain {

struct ProfileOptions {
  int64_t steps = 10;        // measured steps
  int64_t warmup = 2;        // steps run first and not measured
  std::string out_dir;       // trace.json and profile.json go here
  double peak_gflops = 0;    // per rank; 0 = measure an sgemm before and after the steps (best)
  std::string config_path;   // for the report
};

// Collective over the trainer's world: every rank calls it with the same
// options. `trainer` must have been built with options.profiler = &prof and
// (for the comm stream) RecordedGroups. Returns rank 0's report ("" on the
// other ranks). Throws RuntimeError when the files cannot be written.
std::string run_profile(Trainer& trainer, Profiler& prof, const ProfileOptions& options);

}  // namespace dtrain
