#include "core/file_kind.h"

#include <sys/stat.h>

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

}  // namespace dtrain
