#include "core/file_kind.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace dtrain {

std::string special_file_kind(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return "";  // missing: the open says so
  if (S_ISFIFO(st.st_mode)) return "a FIFO";
  if (S_ISDIR(st.st_mode)) return "a directory";
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) return "a device";
  if (S_ISSOCK(st.st_mode)) return "a socket";
  return "not a file";
}

void require_regular_file(const std::string& path, const std::string& what) {
  if (const std::string kind = special_file_kind(path); !kind.empty())
    throw InputError(fmt::format("'{}': not a regular file ({}); expected {}, a regular file", path, kind, what));
}

void write_regular_file(const std::string& path, const std::string& text, const std::string& what) {
  require_regular_file(path, what);  // opened for writing, a FIFO waits for a reader
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    const int err = errno;
    std::error_code ec;
    if (err == ELOOP)  // O_NOFOLLOW: a link planted where the file goes
      throw InputError(fmt::format("'{}' is a symbolic link (to '{}'), which dtrain would write {} through, out of "
                                   "its directory: remove it",
                                   path, std::filesystem::read_symlink(path, ec).string(), what));
    throw RuntimeError(fmt::format("cannot write {} '{}': {}", what, path, std::strerror(err)));
  }
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      throw RuntimeError(fmt::format("cannot write {} '{}': {}", what, path, std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0)
    throw RuntimeError(fmt::format("cannot write {} '{}': {}", what, path, std::strerror(errno)));
}

}  // namespace dtrain
