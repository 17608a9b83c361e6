// One run per directory: a run (or a resume) holds an exclusive lock on its
// output and checkpoint directories for as long as its process lives, so a
// second run writing there is refused, naming the process that holds it,
// instead of interleaving its files with the first one's. The lock is an
// flock(2) on <dir>/.dtrain.lock: the kernel releases it when the holder
// exits or dies, so no lock is ever stale (the file stays, saying who held
// it last).
#pragma once

#include <functional>
#include <string>

namespace dtrain {

// An exclusive flock(2) on the file `path` (created if missing) for as long as
// this object lives, the file saying who holds it ("process N on HOST, since
// T"). Another process holding it: ConfigError with busy(who), who being that
// note ("its process is unknown" without one). Used for one run per directory
// (RunLock) and one sweep per directory (dtrain sweep).
class LockFile {
 public:
  LockFile() = default;
  LockFile(const std::string& path, const std::function<std::string(const std::string& who)>& busy);
  ~LockFile();
  LockFile(LockFile&& o) noexcept;
  LockFile& operator=(LockFile&& o) noexcept;
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;

 private:
  int fd_ = -1;
};

class RunLock {
 public:
  RunLock() = default;
  // Locks `dir` (created if missing, with permissions `dir_mode`: see
  // log.dir_mode). Throws ConfigError naming the holder if another process
  // holds it, RuntimeError if the lock file cannot be made.
  explicit RunLock(const std::string& dir, unsigned dir_mode = 0700);
  // Releases the lock. A directory the lock created that holds nothing else
  // (a run that failed before writing anything) is removed with its lock file.
  ~RunLock();
  RunLock(RunLock&& o) noexcept;
  RunLock& operator=(RunLock&& o) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  LockFile lock_;
  bool created_ = false;  // the directory did not exist before
};

}  // namespace dtrain
