#include "data/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "core/error.h"

namespace dtrain::data_detail {

namespace {

// Where a relative path was looked for: a run started from another directory
// than the one its config's paths assume is the usual cause.
std::string relative_note(const std::string& path) {
  if (path.empty() || path.front() == '/') return {};
  char cwd[4096];
  if (!::getcwd(cwd, sizeof cwd)) return " (a path relative to the working directory)";
  return fmt::format(" (a path relative to the working directory, {})", cwd);
}

}  // namespace

InputFile::InputFile(const std::string& path, const char* what) : path_(path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer (fstat refuses it below).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) throw InputError(fmt::format("{} '{}' not found{}", what, path, relative_note(path)));
    throw InputError(fmt::format("cannot read {} '{}': {}", what, path, std::strerror(err)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw InputError(fmt::format("cannot read {} '{}': {}", what, path, std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(fmt::format("{} '{}' is not a regular file (a {})", what, path,
                                 S_ISDIR(st.st_mode) ? "directory" : S_ISFIFO(st.st_mode) ? "FIFO" : "device or socket"));
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  f_ = fdopen(fd, "rb");
  if (!f_) {
    int err = errno;
    ::close(fd);
    throw InputError(fmt::format("cannot read {} '{}': {}", what, path, std::strerror(err)));
  }
  size_ = static_cast<int64_t>(st.st_size);
  identity_of(fd, id_);
}

bool InputFile::identity_of(int fd, Identity& out) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  out.device = static_cast<uint64_t>(st.st_dev);
  out.inode = static_cast<uint64_t>(st.st_ino);
  out.size = static_cast<int64_t>(st.st_size);
  out.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return true;
}

InputFile::~InputFile() {
  if (f_) std::fclose(f_);
}

void InputFile::read(void* dst, int64_t bytes) {
  size_t got = std::fread(dst, 1, static_cast<size_t>(bytes), f_);
  if (static_cast<int64_t>(got) != bytes) {
    const char* why = std::ferror(f_) ? std::strerror(errno) : "unexpected end of file";
    throw InputError(fmt::format("cannot read '{}': {}", path_, why));
  }
}

}  // namespace dtrain::data_detail
