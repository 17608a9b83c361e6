#include "data/token_file.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "data/input_file.h"

namespace dtrain {

using data_detail::load_le32;

namespace {

std::string cannot_open(const std::string& path, int err) {
  return fmt::format("cannot read data file '{}': {}", path, std::strerror(err));
}

// A token file open for reading, closed on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(const TokenFile& f) : fd(f.open()) {
    if (fd < 0) throw InputError(cannot_open(f.path(), errno));
  }
  ~Fd() { ::close(fd); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// Tokens [first, first + count) of the file open as `fd`, each `width` bytes
// (2 or 4) little-endian, into out as uint32. uint16 tokens are read into the
// upper half of out's bytes and widened in place, front to back (token i's
// four bytes end at or before token i + 1's two begin).
void read_tokens(int fd, const std::string& path, int64_t first, int64_t count, int width, uint32_t* out) {
  char* const base = reinterpret_cast<char*>(out);
  char* const dst = width == 4 ? base : base + 2 * count;
  const int64_t begin = TokenFile::kHeaderBytes + width * first, bytes = width * count;
  int64_t done = 0;
  while (done < bytes) {
    const ssize_t got = ::pread(fd, dst + done, static_cast<size_t>(bytes - done), begin + done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0)
      throw InputError(fmt::format("'{}': cannot read tokens [{}, {}): {}", path, first, first + count,
                                   got < 0 ? std::strerror(errno)
                                           : "the file is shorter than when it was opened (changed since?)"));
    done += got;
  }
  const auto* bytes_in = reinterpret_cast<const unsigned char*>(dst);
  if (width == 2) {
    for (int64_t i = 0; i < count; ++i)
      out[i] = static_cast<uint32_t>(bytes_in[2 * i]) | static_cast<uint32_t>(bytes_in[2 * i + 1]) << 8;
  } else if constexpr (std::endian::native == std::endian::big) {
    for (int64_t i = 0; i < count; ++i) out[i] = __builtin_bswap32(out[i]);
  }
}

}  // namespace

TokenFile::TokenFile(const std::string& path) : path_(path) {
  data_detail::InputFile file(path, "data file");
  // The magic first: a short file of something else (a config, a text) is not
  // a truncated token file.
  unsigned char header[kHeaderBytes] = {};
  const int64_t have = std::min<int64_t>(file.size(), kHeaderBytes);
  file.read(header, have);
  const int32_t magic = load_le32(header);
  if (have < 4 || (magic != kMagic && magic != kMagic32)) {
    const char* hint = header[0] == 0x1f && header[1] == 0x8b ? " (the file is gzip-compressed: decompress it first)" : "";
    if (have < 4)
      throw InputError(fmt::format("'{}' is not an llm.c token file: {} bytes, shorter than its {}-byte header", path,
                                   file.size(), kHeaderBytes));
    throw InputError(fmt::format("'{}' is not an llm.c token file: magic {}, expected {} (GPT-2's, uint16 tokens) or "
                                 "{} (LLaMA 3's, uint32){}",
                                 path, magic, kMagic, kMagic32, hint));
  }
  if (file.size() < kHeaderBytes)
    throw InputError(fmt::format(
        "'{}' is truncated: a token file starts with a {}-byte header, the file has {} bytes", path,
        kHeaderBytes, file.size()));
  int32_t version = load_le32(header + 4);
  int64_t n = load_le32(header + 8);
  token_bytes_ = magic == kMagic ? 2 : 4;
  const int32_t want_version = magic == kMagic ? kVersion : kVersion32;
  if (version != want_version)
    throw InputError(fmt::format("'{}': unsupported version {} (expected {} for magic {})", path, version, want_version,
                                 magic));
  if (n < 0)
    throw InputError(fmt::format("'{}': the header says {} tokens (a negative count)", path, n));

  const int64_t body = file.size() - kHeaderBytes, want = token_bytes_ * n;
  if (body < want)
    throw InputError(fmt::format(
        "'{}' is truncated: the header says {} tokens ({} bytes) but {} bytes follow it", path, n,
        want, body));
  if (body > want)
    throw InputError(fmt::format(
        "'{}' has trailing data: the header says {} tokens ({} bytes) but {} bytes follow it", path,
        n, want, body));
  if (n < 2)
    throw InputError(
        fmt::format("'{}' has {} token{}: a token file needs at least 2 (an input and its target)",
                    path, n, n == 1 ? "" : "s"));
  size_ = n;
  id_ = file.identity();
}

int TokenFile::open() const {
  // O_NONBLOCK: a FIFO put in the file's place must not block the open.
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return -1;
  data_detail::InputFile::Identity now;
  if (!data_detail::InputFile::identity_of(fd, now) || !(now == id_)) {
    ::close(fd);
    throw InputError(fmt::format("'{}' is no longer the file checked before training ({} tokens): it was replaced "
                                 "or modified since, and a run reads its tokens as it goes",
                                 path_, size_));
  }
  return fd;
}

std::vector<uint32_t> TokenFile::read(int64_t first, int64_t count) const {
  DTRAIN_CHECK(first >= 0 && count >= 0 && first + count <= size_, "read [{}, {}) of {} tokens", first,
               first + count, size_);
  std::vector<uint32_t> out(static_cast<size_t>(count));
  const Fd f(*this);
  read_tokens(f.fd, path_, first, count, token_bytes_, out.data());
  return out;
}

void TokenFile::check_vocab(int64_t vocab_size, const char* key) const {
  // In blocks of 1M tokens; a branch-free max (vectorised) over each, the
  // position looked up only on failure.
  constexpr int64_t kBlock = int64_t{1} << 20;
  std::vector<uint32_t> buf(static_cast<size_t>(std::min(kBlock, size_)));
  const Fd f(*this);
  for (int64_t at = 0; at < size_; at += kBlock) {
    const int64_t n = std::min(kBlock, size_ - at);
    read_tokens(f.fd, path_, at, n, token_bytes_, buf.data());
    uint32_t max = 0;
    for (int64_t i = 0; i < n; ++i) max = std::max(max, buf[i]);
    if (int64_t{max} < vocab_size) continue;
    const auto it = std::find_if(buf.begin(), buf.begin() + n, [&](uint32_t t) { return int64_t{t} >= vocab_size; });
    throw InputError(fmt::format("'{}': token {} at position {} is out of range for {} = {}", path_, *it,
                                 at + (it - buf.begin()), key, vocab_size));
  }
}

bool is_glob_pattern(const std::string& path) { return path.find_first_of("*?[") != std::string::npos; }

std::vector<std::string> token_file_paths(const std::string& pattern) {
  std::error_code ec;
  if (!is_glob_pattern(pattern) || std::filesystem::exists(pattern, ec)) return {pattern};  // "data[1].bin" itself
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  ::globfree(&g);
  if (rc == GLOB_NOMATCH || (rc == 0 && out.empty()))
    throw InputError(fmt::format("no file matches '{}'", pattern));
  if (rc != 0) throw InputError(fmt::format("cannot list the files of '{}': a directory could not be read", pattern));
  std::sort(out.begin(), out.end());  // name order, whatever the locale
  return out;
}

TokenCorpus::TokenCorpus(const std::string& pattern) : pattern_(pattern) {
  for (const std::string& path : token_file_paths(pattern)) files_.emplace_back(path);
  fds_.assign(files_.size(), -1);
  struct rlimit lim {};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
    max_open_ = std::clamp<size_t>(static_cast<size_t>(lim.rlim_cur) / 8, 1, kOpenFiles);
}

TokenCorpus::~TokenCorpus() { close_all(); }

void TokenCorpus::close_all() const {
  for (size_t f : open_) {
    ::close(fds_[f]);
    fds_[f] = -1;
  }
  open_.clear();
}

int64_t TokenCorpus::size() const {
  int64_t n = 0;
  for (const TokenFile& f : files_) n += f.size();
  return n;
}

void TokenCorpus::read(size_t f, int64_t first, int64_t count, uint32_t* out) const {
  DTRAIN_CHECK(f < files_.size() && first >= 0 && count >= 0 && first + count <= files_[f].size(),
               "read file {} of {}, tokens [{}, {})", f, files_.size(), first, first + count);
  if (fds_[f] < 0) {
    if (open_.size() >= max_open_) {  // the longest open makes way
      ::close(fds_[open_.front()]);
      fds_[open_.front()] = -1;
      open_.erase(open_.begin());
    }
    int fd = files_[f].open();
    if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {  // the process's or system's limit: make room, once
      close_all();
      fd = files_[f].open();
    }
    if (fd < 0) throw InputError(cannot_open(files_[f].path(), errno));
    fds_[f] = fd;
    open_.push_back(f);
  }
  read_tokens(fds_[f], files_[f].path(), first, count, files_[f].token_bytes(), out);
}

void TokenCorpus::check_vocab(int64_t vocab_size, const char* key) const {
  for (const TokenFile& f : files_) f.check_vocab(vocab_size, key);
}

}  // namespace dtrain

namespace dtrain {

TokenFileWriter::TokenFileWriter(std::string path, bool wide) : path_(std::move(path)), tmp_(path_ + ".tmp"), wide_(wide) {
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) throw InputError(fmt::format("'{}': cannot write: {}", tmp_, std::strerror(errno)));
  const std::vector<char> header(TokenFile::kHeaderBytes, 0);  // the count goes in at finish()
  if (std::fwrite(header.data(), 1, header.size(), f_) != header.size()) {
    const int err = errno;
    std::fclose(f_);
    std::remove(tmp_.c_str());
    throw InputError(fmt::format("'{}': cannot write: {}", tmp_, std::strerror(err)));
  }
}

TokenFileWriter::~TokenFileWriter() {
  if (!f_) return;
  std::fclose(f_);
  std::remove(tmp_.c_str());
}

void TokenFileWriter::append(std::span<const int32_t> tokens) {
  DTRAIN_CHECK(f_, "'{}': append after finish", path_);
  const int width = wide_ ? 4 : 2;
  const int64_t limit = wide_ ? INT32_MAX : 0xFFFF;
  if (count_ + static_cast<int64_t>(tokens.size()) >= (int64_t{1} << 31) - 1)
    throw InputError(fmt::format("'{}': a token file holds fewer than 2^31 - 1 tokens: shard it (--shard-tokens)", path_));
  std::vector<unsigned char> buf(tokens.size() * static_cast<size_t>(width));
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] > limit)
      throw InputError(fmt::format("'{}': token {} is {}: expected 0 .. {} in a {} file", path_,
                                   count_ + static_cast<int64_t>(i), tokens[i], limit, wide_ ? "uint32" : "uint16"));
    const auto v = static_cast<uint32_t>(tokens[i]);
    for (int b = 0; b < width; ++b) buf[i * static_cast<size_t>(width) + static_cast<size_t>(b)] = static_cast<unsigned char>(v >> (8 * b));
  }
  if (std::fwrite(buf.data(), 1, buf.size(), f_) != buf.size())
    throw InputError(fmt::format("'{}': cannot write: {}", tmp_, std::strerror(errno)));
  count_ += static_cast<int64_t>(tokens.size());
}

void TokenFileWriter::finish() {
  DTRAIN_CHECK(f_, "'{}': finished twice", path_);
  if (count_ < 2)
    throw InputError(fmt::format("'{}': a token file holds at least 2 tokens (an input and its target), not {}", path_,
                                 count_));
  unsigned char head[12];
  const uint32_t fields[3] = {static_cast<uint32_t>(wide_ ? TokenFile::kMagic32 : TokenFile::kMagic),
                              static_cast<uint32_t>(wide_ ? TokenFile::kVersion32 : TokenFile::kVersion),
                              static_cast<uint32_t>(count_)};
  for (int k = 0; k < 3; ++k)
    for (int b = 0; b < 4; ++b) head[4 * k + b] = static_cast<unsigned char>(fields[k] >> (8 * b));
  const bool ok = std::fseek(f_, 0, SEEK_SET) == 0 && std::fwrite(head, 1, sizeof head, f_) == sizeof head;
  const int err = errno;
  const bool closed = std::fclose(f_) == 0;
  f_ = nullptr;
  if (!ok || !closed) {
    std::remove(tmp_.c_str());
    throw InputError(fmt::format("'{}': cannot write: {}", tmp_, std::strerror(ok ? errno : err)));
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp_.c_str());
    throw InputError(fmt::format("'{}': cannot rename {} to it: {}", path_, tmp_, std::strerror(e)));
  }
}

}  // namespace dtrain
