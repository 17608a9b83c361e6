#include "data/token_file.h"

#include <algorithm>
#include <bit>

#include "core/error.h"
#include "data/input_file.h"

namespace dtrain {

using data_detail::load_le32;

TokenFile::TokenFile(const std::string& path) : path_(path) {
  data_detail::InputFile file(path, "data file");
  if (file.size() < kHeaderBytes)
    throw InputError(fmt::format(
        "'{}' is truncated: a token file starts with a {}-byte header, the file has {} bytes", path,
        kHeaderBytes, file.size()));

  unsigned char header[kHeaderBytes];
  file.read(header, kHeaderBytes);
  int32_t magic = load_le32(header);
  int32_t version = load_le32(header + 4);
  int64_t n = load_le32(header + 8);
  if (magic != kMagic) {
    const char* hint = header[0] == 0x1f && header[1] == 0x8b
                           ? " (the file is gzip-compressed: decompress it first)"
                           : "";
    throw InputError(fmt::format("'{}' is not an llm.c token file: magic {}, expected {}{}", path,
                                 magic, kMagic, hint));
  }
  if (version != kVersion)
    throw InputError(
        fmt::format("'{}': unsupported version {} (expected {})", path, version, kVersion));
  if (n < 0)
    throw InputError(fmt::format("'{}': the header says {} tokens (a negative count)", path, n));

  int64_t body = file.size() - kHeaderBytes;
  if (body < 2 * n)
    throw InputError(fmt::format(
        "'{}' is truncated: the header says {} tokens ({} bytes) but {} bytes follow it", path, n,
        2 * n, body));
  if (body > 2 * n)
    throw InputError(fmt::format(
        "'{}' has trailing data: the header says {} tokens ({} bytes) but {} bytes follow it", path,
        n, 2 * n, body));
  if (n < 2)
    throw InputError(
        fmt::format("'{}' has {} token{}: a token file needs at least 2 (an input and its target)",
                    path, n, n == 1 ? "" : "s"));

  tokens_.resize(static_cast<size_t>(n));
  file.read(tokens_.data(), 2 * n);
  if constexpr (std::endian::native == std::endian::big)
    for (uint16_t& t : tokens_) t = static_cast<uint16_t>(t << 8 | t >> 8);
}

void TokenFile::check_vocab(int64_t vocab_size) const {
  // A branch-free max (vectorised); the position is looked up only on failure.
  uint16_t max = 0;
  for (uint16_t t : tokens_) max = std::max(max, t);
  if (max < vocab_size) return;
  auto it = std::find_if(tokens_.begin(), tokens_.end(),
                         [&](uint16_t t) { return int64_t{t} >= vocab_size; });
  throw InputError(
      fmt::format("'{}': token {} at position {} is out of range for model.vocab_size = {}", path_,
                  *it, it - tokens_.begin(), vocab_size));
}

}  // namespace dtrain
