#include "data/input_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace dtrain::data_detail {

InputFile::InputFile(const std::string& path, const char* what) : path_(path) {
  f_ = std::fopen(path.c_str(), "rb");
  if (!f_) {
    int err = errno;
    if (err == ENOENT) throw InputError(fmt::format("{} '{}' not found", what, path));
    throw InputError(fmt::format("cannot read {} '{}': {}", what, path, std::strerror(err)));
  }
  struct stat st {};
  if (fstat(fileno(f_), &st) != 0) {
    int err = errno;
    std::fclose(f_);
    throw InputError(fmt::format("cannot read {} '{}': {}", what, path, std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    std::fclose(f_);
    throw InputError(fmt::format("{} '{}' is not a regular file (a directory?)", what, path));
  }
  size_ = static_cast<int64_t>(st.st_size);
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
