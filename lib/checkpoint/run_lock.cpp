#include "checkpoint/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "checkpoint/store.h"
#include "core/error.h"
#include "core/printable.h"

namespace dtrain {

LockFile::LockFile(const std::string& path, const std::function<std::string(const std::string& who)>& busy) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0) throw RuntimeError(fmt::format("cannot open the lock file '{}': {}", path, std::strerror(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char holder[256] = {};
    const ssize_t n = ::pread(fd_, holder, sizeof holder - 1, 0);
    ::close(fd_);
    fd_ = -1;
    std::string who = n > 0 ? std::string(holder, static_cast<size_t>(n)) : "";
    while (!who.empty() && who.back() == '\n') who.pop_back();
    if (err == EWOULDBLOCK) throw ConfigError(busy(who.empty() ? "its process is unknown" : printable(who)));
    throw RuntimeError(fmt::format("cannot lock '{}': {}", path, std::strerror(err)));
  }
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const std::time_t now = std::time(nullptr);
  char when[32] = {};
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  const std::string me = fmt::format("process {} on {}, since {}\n", getpid(), host, when);
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
    // The lock holds without the note; only the message for a second process is poorer.
  }
}

LockFile::~LockFile() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

LockFile::LockFile(LockFile&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}

LockFile& LockFile::operator=(LockFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

RunLock::RunLock(const std::string& dir, unsigned dir_mode) : dir_(dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  created_ = !fs::exists(dir, ec) && !ec;
  store::create_dir(dir, dir_mode);
  lock_ = LockFile((fs::path(dir) / ".dtrain.lock").string(), [&](const std::string& who) {
    return fmt::format("'{}' is in use by another dtrain run ({}); give this one another directory (--out) or "
                       "wait for that one to end",
                       dir, who);
  });
}

RunLock::~RunLock() {
  if (!created_ || dir_.empty()) return;
  // Still held: nobody else can have started writing there.
  namespace fs = std::filesystem;
  std::error_code ec;
  bool only_lock = true;
  for (const auto& e : fs::directory_iterator(dir_, ec))
    if (e.path().filename() != ".dtrain.lock") only_lock = false;
  if (!ec && only_lock) {
    fs::remove(fs::path(dir_) / ".dtrain.lock", ec);
    if (!ec) fs::remove(dir_, ec);
  }
}  // lock_ closes after this body: the flock is released last

RunLock::RunLock(RunLock&& o) noexcept
    : dir_(std::move(o.dir_)), lock_(std::move(o.lock_)), created_(std::exchange(o.created_, false)) {}

RunLock& RunLock::operator=(RunLock&& o) noexcept {
  if (this != &o) {
    dir_ = std::move(o.dir_);
    lock_ = std::move(o.lock_);
    created_ = std::exchange(o.created_, false);
  }
  return *this;
}

}  // namespace dtrain
