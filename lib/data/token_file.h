// A tokenized text corpus in llm.c's .bin format, so that the data files
// prepared by llm.c's scripts (and by tools/text_to_bin.py) train here as they
// are. The format is a header of 256 little-endian int32 -- [0] magic
// 20240520, [1] version 1, [2] number of tokens N -- then N uint16 tokens.
// The whole file is read into memory once; every malformation is an InputError
// that names the file and says what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dtrain {

class TokenFile {
 public:
  static constexpr int32_t kMagic = 20240520;
  static constexpr int32_t kVersion = 1;
  static constexpr int64_t kHeaderInts = 256;
  static constexpr int64_t kHeaderBytes = kHeaderInts * 4;

  // Reads and validates the file (throws InputError).
  explicit TokenFile(const std::string& path);

  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }  // tokens
  const uint16_t* tokens() const { return tokens_.data(); }
  const std::string& path() const { return path_; }

  // Throws InputError naming the first token >= vocab_size and its position.
  void check_vocab(int64_t vocab_size) const;

 private:
  std::string path_;
  std::vector<uint16_t> tokens_;
};

}  // namespace dtrain
