#include "data/token_file.h"

#include <doctest/doctest.h>

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
  for (size_t i = 0; i < tokens.size(); ++i) CHECK(f.tokens()[i] == tokens[i]);
  CHECK_NOTHROW(f.check_vocab(65536));
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
    CHECK_CONTAINS(error_for(Bytes(100, 0)),
                   "is truncated: a token file starts with a 1024-byte header, the file has "
                   "100 bytes");
  }
  SUBCASE("empty") { CHECK_CONTAINS(error_for(Bytes{}), "the file has 0 bytes"); }
  SUBCASE("wrong magic") {
    CHECK_CONTAINS(error_for(token_file(ten, 12345)),
                   "is not an llm.c token file: magic 12345, expected 20240520");
  }
  SUBCASE("gzip-compressed") {
    Bytes gz = token_file(ten);
    gz[0] = 0x1f;
    gz[1] = 0x8b;
    CHECK_CONTAINS(error_for(gz), "gzip-compressed");
  }
  SUBCASE("unsupported version") {
    CHECK_CONTAINS(error_for(token_file(ten, 20240520, 2)), "unsupported version 2 (expected 1)");
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
  for (int64_t i = 0; i < train.size(); ++i)
    CHECK(train.tokens()[i] == static_cast<uint8_t>(text[i]));
  for (int64_t i = 0; i < n_val; ++i)
    CHECK(val.tokens()[i] == static_cast<uint8_t>(text[train.size() + i]));
  CHECK_NOTHROW(train.check_vocab(256));
}
