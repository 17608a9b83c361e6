// The sweep directory's record (sweep.json, nlohmann-json, rewritten
// atomically on every change): each trial's values, state and result, so that
// running `dtrain sweep` again resumes the sweep. And the reader of a trial's
// metrics.jsonl that the sweep polls while the trial runs.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dtrain::sweep {

// pending: not started; running: started (by this sweep or one that was
// killed); interrupted: stopped by a signal to the sweep (resumes from its
// checkpoint); finished: ran to the end; stopped: ended early by ASHA;
// failed: dtrain exited with an error.
struct TrialRecord {
  int64_t id = 0;
  std::vector<std::string> overrides;
  std::string dir;            // the trial's run directory (--out)
  std::string state = "pending";
  std::optional<double> best;  // the best value of the metric (null while there is none)
  int64_t best_step = -1;
  int64_t steps = 0;           // the last step in metrics.jsonl
  std::map<int64_t, double> rungs;  // ASHA: the value recorded at each rung reached
  int64_t stopped_at = -1;     // the rung ASHA stopped it at
  int attempts = 0;            // processes started (or Slurm jobs submitted)
  int exit_code = -1;          // the last process's exit status (-1: none yet)
  std::string note;            // why it failed, or how it ended
  int64_t pid = 0;             // a local process running it, and its start time (/proc, to
  uint64_t pid_start = 0;      // recognise that same process after a restart of the sweep)
  std::string slurm_job;       // --slurm: "ARRAYID_TASK"

  bool done() const { return state == "finished" || state == "stopped" || state == "failed"; }
};

struct SweepRecord {
  std::string sweep_file;
  std::string metric, mode;
  std::vector<TrialRecord> trials;
  // The settings every trial shares (the sweep file's base and `set`), so a
  // rerun with other ones is known as another sweep; nullopt in records
  // written before they were kept.
  std::optional<std::string> base = {};
  std::optional<std::vector<std::string>> set = {};
};

// Reads DIR/sweep.json; nullopt if there is none. Throws InputError naming the
// file when it cannot be read.
std::optional<SweepRecord> load_record(const std::string& dir);
// Writes DIR/sweep.json (a temporary file, then rename). Throws RuntimeError.
void save_record(const std::string& dir, const SweepRecord& r);

struct MetricPoint {
  int64_t step;
  double value;  // NaN for a null (a non-finite value)
};

// Follows one metrics.jsonl: each poll reads the lines added since the last
// (starting over when the file shrank: a resumed run trims what came after
// its checkpoint) and keeps the points of `metric` and the last step seen.
class MetricsTail {
 public:
  MetricsTail(std::string path, std::string metric) : path_(std::move(path)), metric_(std::move(metric)) {}
  void poll();
  const std::vector<MetricPoint>& points() const { return points_; }
  int64_t last_step() const { return last_step_; }
  // The best point (min or max); nullopt while there is none.
  std::optional<MetricPoint> best(bool maximize) const;
  // The metric at `rung`: the last point at or before it, once the run is
  // past it (a point of the metric at or after it, or any record after it,
  // or `ended`); nullopt before.
  std::optional<double> at_rung(int64_t rung, bool ended) const;

 private:
  std::string path_, metric_;
  uint64_t offset_ = 0;
  std::string partial_;
  std::vector<MetricPoint> points_;
  int64_t last_step_ = 0;
};

}  // namespace dtrain::sweep
