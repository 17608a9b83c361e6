#include "data/token_file.h"

#include <doctest/doctest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "data/data_files.h"

using namespace dtrain;
using namespace dtrain::testing;

TEST_CASE("a token file round-trips every uint16 value") {
  TempDir dir;
  std::vector<uint16_t> tokens = {0, 1, 255, 256, 4660, 50256, 65535};
  std::string path = dir.file("good.bin");
  write_bytes(path, token_file(tokens));
  TokenFile f(path);
  CHECK(f.path() == path);
  REQUIRE(f.size() == static_cast<int64_t>(tokens.size()));
  CHECK(f.token_bytes() == 2);
  CHECK(f.read(0, f.size()) == std::vector<uint32_t>(tokens.begin(), tokens.end()));
  CHECK(f.read(2, 3) == std::vector<uint32_t>{255, 256, 4660});
  CHECK_NOTHROW(f.check_vocab(65536));
}

TEST_CASE("LLaMA 3's token files (uint32, llm.c's magic 20240801 version 7): ids beyond 65535 round-trip") {
  TempDir dir;
  const std::vector<uint32_t> tokens = {0, 65535, 65536, 128000, 128255, 70000, 7, 4294967295u};
  const std::string path = dir.file("llama3.bin");
  write_bytes(path, token_file32(tokens));
  const TokenFile f(path);
  CHECK(f.token_bytes() == 4);
  REQUIRE(f.size() == 8);
  CHECK(f.read(0, f.size()) == tokens);
  CHECK(f.read(2, 3) == std::vector<uint32_t>{65536, 128000, 128255});
  // The largest uint32 is out of range for any vocabulary; LLaMA 3's 128256 holds the rest.
  CHECK(input_error([&] { f.check_vocab(128256); }) ==
        "'" + path + "': token 4294967295 at position 7 is out of range for model.vocab_size = 128256");
  CHECK_CONTAINS(input_error([&] { f.check_vocab(100000); }), "token 128000 at position 3");
  // Its header's byte count is 4 per token; its version 7.
  auto error_for = [&](const Bytes& bytes) {
    write_bytes(path, bytes);
    return input_error([&] { TokenFile g(path); });
  };
  CHECK_CONTAINS(error_for(token_file32({1, 2, 3}, 20240801, 7, 4)),
                 "is truncated: the header says 4 tokens (16 bytes) but 12 bytes follow it");
  CHECK_CONTAINS(error_for(token_file32({1, 2, 3}, 20240801, 1)), "unsupported version 1 (expected 7 for magic 20240801)");
  CHECK_CONTAINS(error_for(token_file({1, 2, 3}, 20240801, 7)),  // uint16 tokens under LLaMA 3's header
                 "is truncated: the header says 3 tokens (12 bytes) but 6 bytes follow it");
}

TEST_CASE("check_vocab names the first out-of-range token and its position") {
  TempDir dir;
  std::vector<uint16_t> tokens(40, 7);
  tokens[17] = 300;
  tokens[30] = 400;
  std::string path = dir.file("vocab.bin");
  write_bytes(path, token_file(tokens));
  TokenFile f(path);
  CHECK_NOTHROW(f.check_vocab(401));
  std::string msg = input_error([&] { f.check_vocab(256); });
  CHECK(msg ==
        "'" + path + "': token 300 at position 17 is out of range for model.vocab_size = 256");
  CHECK_CONTAINS(input_error([&] { f.check_vocab(301); }), "token 400 at position 30");
  CHECK_CONTAINS(input_error([&] { f.check_vocab(400); }), "token 400 at position 30");
}

TEST_CASE("every malformed token file is an InputError naming the file and what was expected") {
  TempDir dir;
  auto error_for = [&](const Bytes& bytes) {
    std::string path = dir.file("bad.bin");
    write_bytes(path, bytes);
    std::string msg = input_error([&] { TokenFile f(path); });
    CHECK_CONTAINS(msg, "'" + path + "'");
    return msg;
  };
  std::vector<uint16_t> ten = iota_tokens(10);

  SUBCASE("missing") {
    std::string path = dir.file("missing.bin");
    CHECK(input_error([&] { TokenFile f(path); }) == "data file '" + path + "' not found");
  }
  SUBCASE("a directory") {
    std::string path = dir.file("sub");
    std::filesystem::create_directory(path);
    CHECK_CONTAINS(input_error([&] { TokenFile f(path); }), "is not a regular file");
  }
  SUBCASE("shorter than the header") {
    Bytes cut = token_file(ten);
    cut.resize(100);
    CHECK_CONTAINS(error_for(cut),
                   "is truncated: a token file starts with a 1024-byte header, the file has "
                   "100 bytes");
  }
  SUBCASE("short, and something else (a config, a text): not called truncated") {
    const std::string text = "[model]\nn_layer = 2\n";
    CHECK_CONTAINS(error_for(Bytes(text.begin(), text.end())), "is not an llm.c token file: magic ");
  }
  SUBCASE("empty") {
    CHECK_CONTAINS(error_for(Bytes{}), "is not an llm.c token file: 0 bytes, shorter than its 1024-byte header");
  }
  SUBCASE("wrong magic") {
    CHECK_CONTAINS(error_for(token_file(ten, 12345)),
                   "is not an llm.c token file: magic 12345, expected 20240520 (GPT-2's, uint16 tokens) or 20240801 "
                   "(LLaMA 3's, uint32)");
  }
  SUBCASE("gzip-compressed") {
    Bytes gz = token_file(ten);
    gz[0] = 0x1f;
    gz[1] = 0x8b;
    CHECK_CONTAINS(error_for(gz), "gzip-compressed");
  }
  SUBCASE("unsupported version") {
    CHECK_CONTAINS(error_for(token_file(ten, 20240520, 2)), "unsupported version 2 (expected 1 for magic 20240520)");
  }
  SUBCASE("truncated body") {
    CHECK_CONTAINS(error_for(token_file(iota_tokens(750), 20240520, 1, 1000)),
                   "is truncated: the header says 1000 tokens (2000 bytes) but 1500 bytes "
                   "follow it");
  }
  SUBCASE("odd byte count") {
    Bytes b = token_file(ten);
    b.pop_back();
    CHECK_CONTAINS(error_for(b), "the header says 10 tokens (20 bytes) but 19 bytes follow it");
  }
  SUBCASE("trailing data") {
    CHECK_CONTAINS(error_for(token_file(ten, 20240520, 1, 8)),
                   "has trailing data: the header says 8 tokens (16 bytes) but 20 bytes");
  }
  SUBCASE("negative count") {
    CHECK_CONTAINS(error_for(token_file({}, 20240520, 1, 0xffffffffll)), "-1 tokens");
  }
  SUBCASE("fewer than 2 tokens") {
    CHECK_CONTAINS(error_for(token_file({5})), "has 1 token: a token file needs at least 2");
    CHECK_CONTAINS(error_for(token_file({})), "has 0 tokens: a token file needs at least 2");
  }
}

TEST_CASE("TokenFile reads what tools/text_to_bin.py writes") {
  if (std::system("python3 -c pass > /dev/null 2>&1") != 0) {
    MESSAGE("python3 not found: skipped");
    return;
  }
  TempDir dir;
  const std::string text = "To be, or not to be: na\xc3\xafve caf\xc3\xa9 (20 + 21 bytes)!";
  {
    std::ofstream f(dir.file("in.txt"), std::ios::binary);
    f << text;
  }
  std::string cmd = "python3 '" DTRAIN_SOURCE_DIR "/tools/text_to_bin.py' '" + dir.file("in.txt") +
                    "' --out '" + dir.file("out") + "' --val-fraction 0.25 > /dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  TokenFile train(dir.file("out_train.bin")), val(dir.file("out_val.bin"));
  const int64_t n_val = static_cast<int64_t>(text.size()) / 4;
  REQUIRE(train.size() == static_cast<int64_t>(text.size()) - n_val);
  REQUIRE(val.size() == n_val);
  const std::vector<uint32_t> a = train.read(0, train.size()), b = val.read(0, n_val);
  for (int64_t i = 0; i < train.size(); ++i) CHECK(a[i] == static_cast<uint8_t>(text[i]));
  for (int64_t i = 0; i < n_val; ++i) CHECK(b[i] == static_cast<uint8_t>(text[train.size() + i]));
  CHECK_NOTHROW(train.check_vocab(256));
}

TEST_CASE("a glob pattern names every file it matches, in name order, and one that matches nothing is refused") {
  TempDir dir;
  // Written out of order: the corpus is in name order, not creation order.
  for (const char* name : {"shard_002.bin", "shard_000.bin", "shard_001.bin"})
    write_bytes(dir.file(name), token_file(iota_tokens(10 + 10 * (name[8] - '0'))));
  write_bytes(dir.file("other.bin"), token_file(iota_tokens(5)));
  CHECK_FALSE(is_glob_pattern(dir.file("shard_000.bin")));
  CHECK(is_glob_pattern(dir.file("shard_*.bin")));
  CHECK(token_file_paths(dir.file("shard_000.bin")) == std::vector<std::string>{dir.file("shard_000.bin")});
  CHECK(token_file_paths(dir.file("shard_00[12].bin")) ==
        std::vector<std::string>{dir.file("shard_001.bin"), dir.file("shard_002.bin")});

  TokenCorpus corpus(dir.file("shard_*.bin"));
  REQUIRE(corpus.files().size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(corpus.files()[i].path() == dir.file(fmt::format("shard_00{}.bin", i)));
    CHECK(corpus.files()[i].size() == static_cast<int64_t>(10 + 10 * i));
  }
  CHECK(corpus.size() == 60);
  std::vector<uint32_t> got(4);
  corpus.read(2, 26, 4, got.data());
  CHECK(got == std::vector<uint32_t>{26, 27, 28, 29});

  write_bytes(dir.file("odd[1].bin"), token_file(iota_tokens(5)));  // a name that reads as a pattern
  CHECK(token_file_paths(dir.file("odd[1].bin")) == std::vector<std::string>{dir.file("odd[1].bin")});
  CHECK(input_error([&] { TokenCorpus c(dir.file("nothing_*.bin")); }) ==
        "no file matches '" + dir.file("nothing_*.bin") + "'");
  // One bad file of many is named.
  Bytes cut = token_file(iota_tokens(5));
  cut.resize(10);
  write_bytes(dir.file("shard_003.bin"), cut);
  CHECK_CONTAINS(input_error([&] { TokenCorpus c(dir.file("shard_*.bin")); }), "'" + dir.file("shard_003.bin") + "' is truncated");
  // The vocabulary scan names the file and the position in it.
  std::vector<uint16_t> bad = iota_tokens(30);
  bad[21] = 900;
  write_bytes(dir.file("shard_003.bin"), token_file(bad));
  CHECK(input_error([&] { TokenCorpus(dir.file("shard_*.bin")).check_vocab(256); }) ==
        "'" + dir.file("shard_003.bin") + "': token 900 at position 21 is out of range for model.vocab_size = 256");
}

TEST_CASE("a corpus of more files than it keeps open reads every file right") {
  TempDir dir;
  const size_t n = TokenCorpus::kOpenFiles + 7;
  for (size_t i = 0; i < n; ++i) {
    std::vector<uint16_t> t(8);
    for (size_t k = 0; k < t.size(); ++k) t[k] = static_cast<uint16_t>(100 * i + k);
    write_bytes(dir.file(fmt::format("s{:04}.bin", i)), token_file(t));
  }
  TokenCorpus corpus(dir.file("s*.bin"));
  REQUIRE(corpus.files().size() == n);
  std::vector<uint32_t> got(2);
  for (int pass = 0; pass < 2; ++pass)  // the second pass reopens the files evicted by the first
    for (size_t i = 0; i < n; ++i) {
      const size_t f = pass ? n - 1 - i : i;
      corpus.read(f, 3, 2, got.data());
      CHECK(got == std::vector<uint32_t>{static_cast<uint32_t>(100 * f + 3), static_cast<uint32_t>(100 * f + 4)});
    }
}

TEST_CASE("a token file cut short while it is open is refused when read, naming it") {
  TempDir dir;
  const std::string path = dir.file("shrinks.bin");
  write_bytes(path, token_file(iota_tokens(100)));
  TokenCorpus corpus(path);
  std::vector<uint32_t> got(10);
  corpus.read(0, 0, 10, got.data());  // open now: cut short below while open
  std::filesystem::resize_file(path, TokenFile::kHeaderBytes + 2 * 50);
  CHECK_NOTHROW(corpus.read(0, 40, 10, got.data()));
  CHECK(input_error([&] { corpus.read(0, 60, 10, got.data()); }) ==
        "'" + path + "': cannot read tokens [60, 70): the file is shorter than when it was opened (changed since?)");
}

TEST_CASE("a token file replaced or modified after it was checked is refused when opened, naming it") {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  write_bytes(path, token_file(iota_tokens(100)));
  std::vector<uint32_t> got(4);
  SUBCASE("replaced by another file of the same size") {
    TokenCorpus corpus(path);
    write_bytes(dir.file("b.bin"), token_file(std::vector<uint16_t>(100, 0)));
    std::filesystem::rename(dir.file("b.bin"), path);
    CHECK(input_error([&] { corpus.read(0, 0, 4, got.data()); }) ==
          "'" + path + "' is no longer the file checked before training (100 tokens): it was replaced or modified "
          "since, and a run reads its tokens as it goes");
    CHECK_CONTAINS(input_error([&] { corpus.check_vocab(256); }), "is no longer the file checked");
  }
  SUBCASE("modified in place") {
    TokenCorpus corpus(path);
    const auto t = std::filesystem::last_write_time(path);
    std::filesystem::last_write_time(path, t + std::chrono::seconds(5));
    CHECK_CONTAINS(input_error([&] { corpus.read(0, 0, 4, got.data()); }), "is no longer the file checked");
  }
  SUBCASE("unchanged: read") {
    TokenCorpus corpus(path);
    corpus.read(0, 10, 4, got.data());
    CHECK(got == std::vector<uint32_t>{10, 11, 12, 13});
  }
}

TEST_CASE("an open refused at the process's file limit closes the files kept open and retries") {
  TempDir dir;
  for (int i = 0; i < 12; ++i) {
    std::vector<uint16_t> t(8, static_cast<uint16_t>(i));
    write_bytes(dir.file(fmt::format("f{:02}.bin", i)), token_file(t));
  }
  TokenCorpus corpus(dir.file("f*.bin"));  // keeps up to 64 open under the usual limit
  struct rlimit before {};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &before) == 0);
  const int lowest_free = ::dup(0);  // opens take the lowest free number, and the limit bounds the numbers
  REQUIRE(lowest_free >= 0);
  ::close(lowest_free);
  struct rlimit low = before;
  low.rlim_cur = static_cast<rlim_t>(lowest_free + 3);  // room for 3 open files at most
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::vector<uint32_t> got(2);
  std::string problem;
  try {
    for (int i = 0; i < 12; ++i) {
      corpus.read(static_cast<size_t>(i), 0, 2, got.data());
      if (got != std::vector<uint32_t>(2, static_cast<uint32_t>(i))) problem = fmt::format("file {} misread", i);
    }
  } catch (const InputError& e) {
    problem = e.what();
  }
  setrlimit(RLIMIT_NOFILE, &before);
  CHECK(problem == "");
}

TEST_CASE("TokenFileWriter writes what TokenFile reads, in both widths, and refuses what they cannot hold") {
  TempDir dir;
  namespace fs = std::filesystem;
  for (const bool wide : {false, true}) {
    const std::string path = dir.file(wide ? "wide.bin" : "narrow.bin");
    TokenFileWriter w(path, wide);
    const std::vector<int32_t> a = {0, 1, 65535}, b = {7, wide ? 128000 : 50256};
    w.append(a);
    w.append(b);
    CHECK(w.size() == 5);
    CHECK_FALSE(fs::exists(path));  // only the .tmp until finished
    w.finish();
    TokenFile f(path);
    CHECK(f.token_bytes() == (wide ? 4 : 2));
    CHECK(f.read(0, 5) == std::vector<uint32_t>{0, 1, 65535, 7, wide ? 128000u : 50256u});
    CHECK_FALSE(fs::exists(path + ".tmp"));
  }
  auto error_of = [](auto&& f) {
    try {
      f();
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const std::string bad = dir.file("bad.bin");
  CHECK(error_of([&] { TokenFileWriter(bad, false).append(std::vector<int32_t>{65536}); })
            .find("'" + bad + "': token 0 is 65536: expected 0 .. 65535 in a uint16 file") != std::string::npos);
  CHECK(error_of([&] { TokenFileWriter(bad, true).append(std::vector<int32_t>{1, -2}); })
            .find("token 1 is -2") != std::string::npos);
  CHECK(error_of([&] {
          TokenFileWriter w(bad, false);
          w.append(std::vector<int32_t>{3});
          w.finish();
        }).find("holds at least 2 tokens") != std::string::npos);
  // A writer given up on leaves nothing behind.
  CHECK_FALSE(fs::exists(bad));
  CHECK_FALSE(fs::exists(bad + ".tmp"));
  CHECK(error_of([&] { TokenFileWriter(dir.file("no/such/dir.bin"), false); }).find("cannot write") !=
        std::string::npos);
}
