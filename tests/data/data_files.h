// Helpers for the data tests: a temporary directory that cleans up after
// itself, and writers for llm.c token files and IDX files (good or broken).
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"

// Checks that `text` contains `part`, printing both when it does not.
#define CHECK_CONTAINS(text, part)                                             \
  do {                                                                         \
    const std::string text_ = (text);                                          \
    const std::string part_ = (part);                                          \
    CHECK_MESSAGE(text_.find(part_) != std::string::npos,                      \
                  "\"" << text_ << "\" does not contain \"" << part_ << "\""); \
  } while (0)

namespace dtrain::testing {

using Bytes = std::vector<uint8_t>;

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("dtrain_data_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// The bytes a hex string spells ("c3a9" -> "\xc3\xa9"): the fixtures' texts.
inline std::string from_hex(const std::string& h) {
  std::string s;
  for (size_t i = 0; i + 1 < h.size(); i += 2) s += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return s;
}

inline void write_bytes(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

inline void put_le32(Bytes& b, int32_t v) {
  for (int i = 0; i < 4; ++i)
    b.push_back(static_cast<uint8_t>(static_cast<uint32_t>(v) >> (8 * i)));
}
inline void put_be32(Bytes& b, uint32_t v) {
  for (int i = 3; i >= 0; --i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// An llm.c token file; the header fields can be overridden to break it.
inline Bytes token_file(const std::vector<uint16_t>& tokens, int32_t magic = 20240520,
                        int32_t version = 1, int64_t header_count = -1) {
  Bytes b;
  put_le32(b, magic);
  put_le32(b, version);
  put_le32(b, static_cast<int32_t>(header_count >= 0 ? header_count : int64_t(tokens.size())));
  b.resize(1024, 0);
  for (uint16_t t : tokens) {
    b.push_back(static_cast<uint8_t>(t & 0xff));
    b.push_back(static_cast<uint8_t>(t >> 8));
  }
  return b;
}

// An llm.c token file of LLaMA 3's format: uint32 tokens (magic 20240801, version 7).
inline Bytes token_file32(const std::vector<uint32_t>& tokens, int32_t magic = 20240801, int32_t version = 7,
                          int64_t header_count = -1) {
  Bytes b;
  put_le32(b, magic);
  put_le32(b, version);
  put_le32(b, static_cast<int32_t>(header_count >= 0 ? header_count : int64_t(tokens.size())));
  b.resize(1024, 0);
  for (uint32_t t : tokens) put_le32(b, t);
  return b;
}

// tokens[i] = i: a window's first token tells which window it is.
inline std::vector<uint16_t> iota_tokens(int64_t n) {
  std::vector<uint16_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<uint16_t>(i);
  return t;
}

// An IDX file: magic, dims, then the data bytes.
inline Bytes idx_file(uint32_t magic, const std::vector<uint32_t>& dims, const Bytes& data) {
  Bytes b;
  put_be32(b, magic);
  for (uint32_t d : dims) put_be32(b, d);
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

// n images of (c, h, w) with pixel value (7 * k + 3) % 256 at flat index k,
// and labels i % classes; written as 0x0803 when c == 1, 0x0804 otherwise.
inline void write_images(const std::string& images, const std::string& labels, uint32_t n,
                         uint32_t c, uint32_t h, uint32_t w, uint32_t classes = 10) {
  Bytes px(static_cast<size_t>(n) * c * h * w);
  for (size_t k = 0; k < px.size(); ++k) px[k] = static_cast<uint8_t>((7 * k + 3) % 256);
  Bytes lb(n);
  for (uint32_t i = 0; i < n; ++i) lb[i] = static_cast<uint8_t>(i % classes);
  if (c == 1)
    write_bytes(images, idx_file(0x803, {n, h, w}, px));
  else
    write_bytes(images, idx_file(0x804, {n, c, h, w}, px));
  write_bytes(labels, idx_file(0x801, {n}, lb));
}

// The message of the InputError that f() throws; "" (a failing CHECK at the
// call site) when it throws nothing.
template <class F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace dtrain::testing
