// A tokenized text corpus in llm.c's .bin format, so that the data files
// prepared by llm.c's scripts (and by tools/text_to_bin.py) train here as they
// are. The format is a header of 256 little-endian int32 -- [0] magic, [1]
// version, [2] number of tokens N -- then N little-endian tokens: uint16 in
// GPT-2's files (magic 20240520, version 1), uint32 in LLaMA 3's (magic
// 20240801, version 7: llm.c's dev/data/data_common.py), for vocabularies
// beyond 65536 ids (LLaMA 3's 128256). A corpus may mix the two.
//
// A corpus is one file or many: llm.c writes large datasets as shards
// ("fineweb_train_000001.bin", ...), and a data key given a glob pattern
// ("data/fineweb10B/fineweb_train_*.bin") reads every file it matches, in name
// order. Tokens are read from the files as they are needed (pread), never held
// whole, so a corpus may be larger than memory. Every malformation is an
// InputError that names the file and says what was expected.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "data/input_file.h"

namespace dtrain {

// One file: its header and size checked when it is opened, its tokens read on
// demand.
class TokenFile {
 public:
  static constexpr int32_t kMagic = 20240520;  // uint16 tokens (GPT-2)
  static constexpr int32_t kVersion = 1;
  static constexpr int32_t kMagic32 = 20240801;  // uint32 tokens (LLaMA 3)
  static constexpr int32_t kVersion32 = 7;
  static constexpr int64_t kHeaderInts = 256;
  static constexpr int64_t kHeaderBytes = kHeaderInts * 4;

  // Checks the header and the file's size against it (throws InputError).
  explicit TokenFile(const std::string& path);

  int64_t size() const { return size_; }  // tokens
  const std::string& path() const { return path_; }
  int token_bytes() const { return token_bytes_; }  // 2 (uint16) or 4 (uint32)

  // Tokens [first, first + count) (throws InputError if the file no longer
  // holds them: it changed after it was opened).
  std::vector<uint32_t> read(int64_t first, int64_t count) const;

  // Reads the whole file; throws InputError naming the first token >=
  // vocab_size and its position.
  void check_vocab(int64_t vocab_size, const char* key = "model.vocab_size") const;

  // Opens the file for reading: a descriptor, or -1 with errno set. Throws
  // InputError if the path no longer names the file checked when this was
  // constructed (replaced, rewritten or touched since: another inode, size or
  // modification time), which a run must not read as if it were.
  int open() const;

 private:
  std::string path_;
  int64_t size_ = 0;
  int token_bytes_ = 2;
  data_detail::InputFile::Identity id_;
};

// An llm.c token file written as its tokens come: uint32 tokens (magic
// 20240801, LLaMA 3's) when `wide`, else uint16 (magic 20240520); to
// `path`.tmp, renamed to `path` by finish() once its header holds the count,
// so a reader never sees half a file (a writer destroyed unfinished removes
// it). Every failure is an InputError naming the path.
class TokenFileWriter {
 public:
  TokenFileWriter(std::string path, bool wide);
  ~TokenFileWriter();
  TokenFileWriter(const TokenFileWriter&) = delete;
  TokenFileWriter& operator=(const TokenFileWriter&) = delete;

  // Throws InputError for a negative token, one beyond uint16 in a narrow
  // file, or a file reaching 2^31 - 1 tokens.
  void append(std::span<const int32_t> tokens);
  // Writes the count and renames the file into place; throws InputError for
  // fewer than 2 tokens (a file holds at least one input and its target).
  void finish();
  int64_t size() const { return count_; }
  const std::string& path() const { return path_; }
  bool wide() const { return wide_; }

 private:
  std::string path_, tmp_;
  bool wide_;
  std::FILE* f_ = nullptr;
  int64_t count_ = 0;
};

// The files a data key names: `pattern` itself, or, when it holds a glob
// character (*, ? or [) and names no file as it is, every file it matches,
// in name order. Throws InputError when a pattern matches nothing.
std::vector<std::string> token_file_paths(const std::string& pattern);
bool is_glob_pattern(const std::string& path);

// The files of one data key, read as one corpus.
class TokenCorpus {
 public:
  // Opens every file `pattern` names (token_file_paths): every problem of
  // every file is an InputError (the first one found).
  explicit TokenCorpus(const std::string& pattern);
  ~TokenCorpus();
  TokenCorpus(const TokenCorpus&) = delete;
  TokenCorpus& operator=(const TokenCorpus&) = delete;

  const std::string& pattern() const { return pattern_; }
  const std::vector<TokenFile>& files() const { return files_; }
  int64_t size() const;  // tokens in all files

  // Tokens [first, first + count) of file `f` into `out`. Keeps up to
  // kOpenFiles files open between calls (fewer under a low RLIMIT_NOFILE:
  // an eighth of it), and closes them all to retry an open the process's
  // file limit refused, so a corpus of thousands of shards stays under it.
  // Throws InputError as TokenFile::read and TokenFile::open.
  void read(size_t f, int64_t first, int64_t count, uint32_t* out) const;

  // Every file's tokens below vocab_size (TokenFile::check_vocab).
  void check_vocab(int64_t vocab_size, const char* key = "model.vocab_size") const;

  static constexpr size_t kOpenFiles = 64;

 private:
  void close_all() const;
  std::string pattern_;
  std::vector<TokenFile> files_;
  size_t max_open_ = kOpenFiles;
  mutable std::vector<int> fds_;    // per file; -1: closed
  mutable std::vector<size_t> open_;  // the files open now, oldest first
};

}  // namespace dtrain
