// The checkpoint directory protocol, apart from what goes in the files:
// names (step_00000100, step_00000100.tmp while being written, .old while
// being replaced or deleted), durable renames (fsync of the files, the
// directory and its parent), the `latest` pointer written by temp + fsync +
// rename, listing the complete checkpoints, and keep-last-N pruning. A crash
// at any point leaves every complete checkpoint intact and at most some
// .tmp/.old directories, which the next save removes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace dtrain::store {

namespace fs = std::filesystem;

inline constexpr const char* kMasterFile = "checkpoint.h5";
inline constexpr const char* kLatestFile = "latest";
inline constexpr const char* kRunFile = "run";  // the run whose checkpoints these are (CheckpointMeta::run_id)

std::string step_dir_name(int64_t step);                     // "step_00000100"
std::optional<int64_t> parse_step_dir_name(const std::string& name);  // complete names only
std::string rank_file_name(int world_rank);                  // "rank_00000.h5"

// Reports each file operation to a test hook (see SaveOptions::on_file_op).
struct FileOps {
  std::function<void(const std::string&)> hook;
  void done(const std::string& what) const {
    if (hook) hook(what);
  }
};

// Creates directory `dir` (and missing parents, with the usual permissions)
// with permissions `mode` exactly (the umask does not apply), e.g. 0700: the
// run and checkpoint directories (log.dir_mode). An existing one is left as
// it is. Throws RuntimeError.
void create_dir(const fs::path& dir, unsigned mode);

// fsync a file or a directory; throws RuntimeError.
void sync_path(const fs::path& p);
// Writes `text` to `path` durably and atomically (path.tmp, fsync, rename, fsync dir).
void write_file_atomic(const fs::path& path, const std::string& text, const FileOps& ops);

struct Entry {
  int64_t step;
  fs::path dir;
};
// Complete checkpoints under `root`, newest (highest step) first.
std::vector<Entry> list_complete(const fs::path& root);
// The name `latest` points to ("" if absent or unreadable).
std::string read_latest(const fs::path& root);
// Removes leftovers of interrupted saves and deletions (*.tmp, *.old, latest.tmp).
void remove_leftovers(const fs::path& root, const FileOps& ops);
// Makes `tmp` (complete, synced) the checkpoint `final_dir` and points
// `latest` at it: replaces an existing final_dir by renaming it aside first.
// A `run_id` other than the one the `run` file holds is written there first
// (before `latest`: a crash between the two never makes this run's newest
// checkpoint look foreign).
void publish(const fs::path& tmp, const fs::path& final_dir, const FileOps& ops, const std::string& run_id = "");
// The id the `run` file holds ("" if absent, unreadable or not one line of hex).
std::string read_run(const fs::path& root);
// A run starting in `out_dir` (a new one, or a resume continuing elsewhere)
// where an earlier run left its record but no checkpoints: its
// metrics.jsonl (and config.toml, loss.png) renamed to metrics.N.jsonl, ...
// (the first N free), and a line saying so; "" when there was none.
std::string keep_earlier_output(const std::string& out_dir);
// Deletes all but the newest `keep` complete checkpoints (each renamed to
// .old first, so a crash mid-delete leaves no half-deleted complete one).
std::vector<std::string> prune(const fs::path& root, int64_t keep, const FileOps& ops);
// What stands in the way of writing only inside the run directory `out_dir`
// and the checkpoint directory `ckpt_dir` (one line each, naming the config
// key): a file dtrain writes there (config.toml, metrics.jsonl, loss.png, .dtrain.lock,
// latest, run) that is a symbolic link, which a write would follow out of the
// directory; a checkpoint directory written as inside the run directory
// ("<out_dir>/...") that '..' or a link leads out of it.
std::vector<std::string> write_path_problems(const std::string& out_dir, const std::string& ckpt_dir);

// Bytes of all regular files under `dir`.
int64_t dir_bytes(const fs::path& dir);

}  // namespace dtrain::store
