// Helpers of the fuzz targets: inputs as files without touching the disk
// (memfd: a regular file, as the readers require), and a private scratch
// directory per process.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace fuzz {

// A regular in-memory file holding `data`; path() is /proc/self/fd/N.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) : fd_(memfd_create("fuzz", MFD_CLOEXEC)) {
    if (fd_ < 0) std::abort();
    for (size_t done = 0; done < size;) {
      const ssize_t n = write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
  }
  ~MemFile() { close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

// /dev/shm/dtrain-fuzz-<pid>/<name>, created on first use.
inline std::string scratch(const std::string& name) {
  const std::string dir = "/dev/shm/dtrain-fuzz-" + std::to_string(getpid());
  static const bool made = [&] { return system(("mkdir -p " + dir).c_str()) == 0; }();
  if (!made) std::abort();
  return dir + "/" + name;
}

}  // namespace fuzz
