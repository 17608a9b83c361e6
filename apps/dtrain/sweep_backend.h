// Where `dtrain sweep` runs its trials: local child processes (each a
// `dtrain run`/`resume`, behind an optional launcher such as mpirun), or
// tasks of a Slurm job array built on tools/slurm/dtrain.sbatch. The sweep's
// loop (cmd_sweep.cpp) starts trials, follows their metrics.jsonl, stops the
// ones ASHA drops and reaps the ones that ended, through this interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sweep/record.h"
#include "sweep/sweep.h"

namespace dtrain_cli {

// A trial to start: its record (the backend fills in pid or slurm_job) and the
// dtrain arguments after the binary ("run", CONFIG, "--set", ...).
struct Launch {
  dtrain::sweep::TrialRecord* trial;
  std::vector<std::string> args;
};

// A trial whose process or job ended: its exit status (a signal as 128 + N;
// -1 when nothing says) and how, in words ("exit 2", "killed by SIGKILL").
struct TrialExit {
  int64_t id;
  int status;
  std::string how;
};

class SweepBackend {
 public:
  virtual ~SweepBackend() = default;
  // How many more trials may start now, with `running` running.
  virtual size_t free_slots(size_t running) const = 0;
  virtual void start(const std::vector<Launch>& launches) = 0;
  // The trials that ended since the last call.
  virtual std::vector<TrialExit> reap() = 0;
  // Asks a trial to stop (it checkpoints and exits 4); `hard`: kill it now.
  virtual void stop(const dtrain::sweep::TrialRecord& t, bool hard) = 0;
  // A trial a killed sweep left running: true if it is still running and now
  // watched by this backend (Slurm); false if it is gone (local processes are
  // waited for here: they were told to stop when the sweep died).
  virtual bool adopt(dtrain::sweep::TrialRecord& t) = 0;
};

// `self`: this dtrain binary; `launcher`: a command-line prefix (may be empty).
std::unique_ptr<SweepBackend> local_backend(std::string self, std::vector<std::string> launcher, int64_t concurrency);
// `sweep_dir`: where the array script and its task files go.
std::unique_ptr<SweepBackend> slurm_backend(std::string self, const dtrain::sweep::Spec& spec, std::string sweep_dir);

}  // namespace dtrain_cli
