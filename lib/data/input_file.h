// A read-only data file opened for one pass of reading, with the error
// messages every loader needs in one place: missing file, unreadable file,
// directory instead of a file, short read. Internal to lib/data.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace dtrain::data_detail {

class InputFile {
 public:
  // `what` names the kind of file in messages, e.g. "data file", "image file".
  InputFile(const std::string& path, const char* what);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  int64_t size() const { return size_; }
  // What the file is (device, inode, size, modification time), to tell
  // later whether a path still names the same, unchanged file.
  struct Identity {
    uint64_t device = 0, inode = 0;
    int64_t size = 0, mtime_ns = 0;
    bool operator==(const Identity&) const = default;
  };
  const Identity& identity() const { return id_; }
  // The identity of an open descriptor (fstat); false if fstat fails.
  static bool identity_of(int fd, Identity& out);
  // Reads exactly `bytes` bytes from the current position (throws InputError otherwise).
  void read(void* dst, int64_t bytes);

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  int64_t size_ = 0;
  Identity id_;
};

// Big- and little-endian 32-bit reads from a byte buffer (the host order does not matter).
inline uint32_t load_be32(const unsigned char* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
inline int32_t load_le32(const unsigned char* p) {
  return static_cast<int32_t>(uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 |
                              uint32_t{p[3]} << 24);
}

}  // namespace dtrain::data_detail
